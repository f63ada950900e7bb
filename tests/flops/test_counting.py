import math

import pytest
import torch
from torch import nn

from rigl_repro.errors import ConfigError
from rigl_repro.flops.counting import inference_flops, layer_flops
from rigl_repro.models import resnet50, small_cnn, wrn22_2


def test_dense_wrn22_2_and_resnet50_match_the_notes():
    assert sum(layer_flops(wrn22_2(10), (3, 32, 32)).values()) == 315_460_096  # report: 3.15e8
    assert sum(layer_flops(resnet50(100), (3, 32, 32)).values()) == 2_596_028_416  # report: 2.59e9


def test_per_layer_counts_are_two_multiply_accumulates_per_output():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    flops = layer_flops(model, (3, 8, 8))
    assert flops == {"0.weight": 2 * (8 * 4 * 4) * (3 * 3 * 3), "2.weight": 2 * 5 * 128}
    assert inference_flops(flops, {"0.weight": 0.5}) == flops["0.weight"] / 2 + flops["2.weight"]


def test_counting_touches_no_batchnorm_statistics_and_leaves_no_hooks():
    model = small_cnn()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    layer_flops(model, (1, 8, 8))
    assert model.training
    assert all(torch.equal(before[name], buffer) for name, buffer in model.named_buffers())
    assert all(not module._forward_hooks for module in model.modules())


def test_hooks_are_removed_even_when_the_forward_pass_fails():
    model = small_cnn()
    with pytest.raises(ConfigError, match=r"does not take the dataset's 3x8x8 images .*choose a model"):
        layer_flops(model, (3, 8, 8))  # wrong channel count
    assert all(not module._forward_hooks for module in model.modules())


def test_relative_flops_of_a_uniform_density_approach_the_density():
    flops = layer_flops(wrn22_2(10), (3, 32, 32))
    names = list(flops)
    densities = {name: (1.0 if name == names[0] else 0.1) for name in names}
    assert math.isclose(inference_flops(flops, densities) / sum(flops.values()), 0.1025, abs_tol=5e-4)
