import pytest
import torch

from rigl_repro.models import resnet50, small_cnn, wrn22_2
from rigl_repro.sparsity.masks import weight_shapes


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def test_wrn22_2_has_the_report_parameter_count():
    model = wrn22_2(10)
    assert parameter_count(model) == 1_079_642
    conv = sum(torch.Size(s).numel() for n, s in weight_shapes(model).items() if n != "fc.weight")
    assert conv == 1_075_632


def test_resnet50_has_the_report_parameter_count_and_zero_initialised_last_bn():
    model = resnet50(100)
    assert parameter_count(model) == 23_705_252
    assert all(not block.bn3.weight.any() for block in model.blocks)


@pytest.mark.parametrize("build, classes, size, channels", [(wrn22_2, 10, 32, 3), (small_cnn, 10, 8, 1)])
def test_forward_shapes_and_width_multiplier(build, classes, size, channels):
    model = build(classes)
    assert model(torch.randn(2, channels, size, size)).shape == (2, classes)
    assert parameter_count(build(classes, width=0.5)) < 0.3 * parameter_count(model)
