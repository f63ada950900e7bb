"""The convolution layer of sparse inference (CsrConv2d, rigl_repro/inference/layers.py) and how convolutions
are decided: equal outputs, the cases it refuses, and every decision recorded with its reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rigl_repro.inference import CsrConv2d, max_relative_error, native_kernel, sparsify_for_inference
from rigl_repro.inference import layers as layers_module
from rigl_repro.inference.layers import conv_geometry
from rigl_repro.models import build_model

needs_kernel = pytest.mark.skipif(native_kernel() is None, reason="the native kernel cannot be built here")


def masked(model: nn.Module, density: float = 0.2, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                mask = torch.rand(module.weight.shape, generator=generator) < density
                module.register_buffer("weight_mask", mask)
                module.weight.mul_(mask)
    return model.eval()


@needs_kernel
@pytest.mark.parametrize("options", [{"padding": 1}, {"padding": "same", "dilation": 2}, {"padding": "valid"},
                                     {"stride": 2, "padding": (1, 0), "bias": False}])  # fmt: skip
def test_a_sparse_convolution_computes_what_the_masked_one_does(options):
    torch.manual_seed(0)
    conv = masked(nn.Sequential(nn.Conv2d(6, 8, 3, **options)))[0]
    layer = CsrConv2d(conv)
    assert layer.nnz == int(conv.weight_mask.sum())
    for x in (torch.randn(3, 6, 9, 10), torch.randn(6, 9, 10), torch.randn(2, 10, 9, 6).permute(0, 3, 1, 2)):
        with torch.inference_mode():  # batched, one image (C, H, W), channels-last memory
            reference, out = conv(x), layer(x)
            assert max_relative_error(reference, out) <= 1e-5
            assert out.is_contiguous() == reference.is_contiguous()  # channels-last in, channels-last out


def test_without_the_native_kernel_a_sparse_convolution_computes_densely(monkeypatch):
    torch.manual_seed(0)
    conv = masked(nn.Sequential(nn.Conv2d(4, 5, 3, padding=1)))[0]
    layer = CsrConv2d(conv)
    monkeypatch.setattr(layers_module, "native_kernel", lambda: None)
    x = torch.randn(2, 4, 6, 6)
    with torch.inference_mode():
        assert max_relative_error(conv(x), layer(x)) <= 1e-5
        assert max_relative_error(conv.double()(x.double()), layer.double()(x.double())) <= 1e-12


def test_convolutions_the_native_kernel_cannot_take_are_named():
    assert conv_geometry(nn.Conv2d(4, 4, 3, groups=2)) == "groups=2"
    assert conv_geometry(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")) == "padding_mode='reflect'"
    assert "not the same on both sides" in conv_geometry(nn.Conv2d(4, 4, 2, padding="same"))
    assert conv_geometry(nn.Conv2d(4, 4, 3, stride=2, padding=1, dilation=1)) == ((2, 2), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="does not take groups=2"):
        CsrConv2d(nn.Conv2d(4, 4, 3, groups=2))


def small_wrn() -> nn.Module:
    return masked(build_model({"name": "wrn22_2", "width": 0.25}, num_classes=10))


@needs_kernel
def test_sparse_inference_decides_every_convolution_and_keeps_the_outputs():
    torch.manual_seed(0)
    model = small_wrn()
    x = torch.randn(2, 3, 32, 32)
    layers = [name for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    convs = [name for name, m in model.named_modules() if type(m) is nn.Conv2d]
    forced, decisions = sparsify_for_inference(model, batch_size=2, force="csr")
    assert [d.name for d in decisions] == layers
    assert all(isinstance(forced.get_submodule(name), CsrConv2d) for name in convs)
    with torch.inference_mode():
        assert max_relative_error(model(x), forced(x)) <= 1e-5
    timed, decisions = sparsify_for_inference(model, batch_size=2, example_input=x, warmup=0, repeats=1)
    by_name = {d.name: d for d in decisions}
    first = by_name[convs[0]]
    assert first.rows == 2 * 32 * 32 and first.shape == (model.get_submodule(convs[0]).out_channels, 3 * 9)
    assert all(by_name[name].dense_ms > 0 and by_name[name].sparse_ms > 0 for name in convs)
    assert all((d.kernel == "native") == (d.layout == "csr") for d in decisions if d.name in convs)
    with torch.inference_mode():
        assert max_relative_error(model(x), timed(x)) <= 1e-5


def test_convolutions_left_dense_say_why():
    model = masked(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=2)))
    _, (plain, grouped) = sparsify_for_inference(model, batch_size=2)
    expected = "no example_input to time it on" if native_kernel() is not None else "the native kernel is unavailable"
    assert (plain.layout, plain.reason, plain.rows) == ("dense", expected, 0)
    if native_kernel() is not None:
        image = torch.randn(4, 5, 6)  # one unbatched image: its rows are its 5 x 6 output pixels
        _, (one, _) = sparsify_for_inference(model, batch_size=1, example_input=image, warmup=0, repeats=1)
        assert one.rows == 5 * 6
        skipped = masked(nn.Sequential(nn.Conv2d(4, 4, 3), nn.Identity()))
        skipped.forward = lambda x: x  # the convolution is never called
        _, (unreached,) = sparsify_for_inference(skipped, batch_size=1, example_input=image)
        assert unreached.reason == "not reached by example_input"
    assert (grouped.layout, grouped.reason) == ("dense", "groups=2")
    _, (_, forced) = sparsify_for_inference(model, batch_size=2, force="csr")
    assert (forced.layout, forced.reason) == ("dense", "forced to csr, but groups=2")
