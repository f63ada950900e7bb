"""Sparse inference (rigl_repro.inference): converted models compute what the masked dense ones do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rigl_repro.inference import (
    ROW_TILES,
    CsrLinear,
    RowMajorLinear,
    max_relative_error,
    native_kernel,
    sparsify_for_inference,
)
from rigl_repro.models.examples import mlp, vit

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["model", "density", "batch", "threads", "dense_ms", "sparse_ms", "speedup", "max_rel_error"]
needs_kernel = pytest.mark.skipif(native_kernel() is None, reason="the native kernel cannot be built here")


def masked(model: nn.Module, density: float = 0.1, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                mask = torch.rand(module.weight.shape, generator=generator) < density
                module.register_buffer("weight_mask", mask)
                module.weight.mul_(mask)
    return model.eval()


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if type(module) is nn.Linear]


@pytest.mark.parametrize("kernel", ["native", "torch"])
@pytest.mark.parametrize("build, shape", [(lambda: mlp(hidden=(48, 32)), (3, 1, 28, 28)),
                                          (lambda: vit(dim=32, depth=2, heads=2, patch=7), (3, 1, 28, 28)),
                                          (lambda: vit(dim=32, depth=2, heads=2, patch=7), (70, 1, 28, 28))])
def test_converted_models_equal_the_masked_dense_models(build, shape, kernel):
    if kernel == "native" and native_kernel() is None:
        pytest.skip("the native kernel cannot be built here")
    torch.manual_seed(0)
    model = masked(build())
    x = torch.randn(*shape)
    converted, decisions = sparsify_for_inference(model, batch_size=3, force="csr", kernels=[kernel])
    assert [d.name for d in decisions] == linear_names(model)
    assert all(isinstance(converted.get_submodule(d.name), CsrLinear) for d in decisions)
    assert {d.kernel for d in decisions} == {converted.get_submodule(d.name).kernel for d in decisions} == {kernel}
    with torch.inference_mode():
        assert max_relative_error(model(x), converted(x)) <= 1e-5


@needs_kernel
def test_a_native_layer_computes_what_the_masked_linear_does_on_any_input():
    torch.manual_seed(0)
    linear = masked(nn.Sequential(nn.Linear(40, 24)))[0]
    layer = CsrLinear.from_linear(linear, kernel="native")
    for x in (torch.randn(130, 40), torch.randn(40, 50).t(), torch.randn(2, 25, 40)):  # row-major, transposed, tokens
        with torch.inference_mode():
            out = layer(x)
            assert out.shape == (*x.shape[:-1], 24) and out.is_contiguous()
            assert max_relative_error(linear(x), out) <= 1e-5
    double = torch.randn(5, 40, dtype=torch.float64)  # the native kernel takes float32 only: torch's product runs
    with torch.inference_mode():
        assert max_relative_error(linear.double()(double), layer.double()(double)) <= 1e-12
    with pytest.raises(ValueError, match="tiles its input itself"):
        CsrLinear.from_linear(linear, tile=64, kernel="native")
    with pytest.raises(ValueError, match="choose one of native, torch"):
        CsrLinear.from_linear(linear, kernel="mkl")


def test_without_the_native_kernel_torchs_product_is_used(monkeypatch):
    monkeypatch.setenv("RIGL_REPRO_NATIVE_KERNEL", "0")
    native_kernel.cache_clear()
    try:
        model = masked(nn.Sequential(nn.Linear(32, 32)))
        converted, (decision,) = sparsify_for_inference(model, batch_size=4, force="csr")
        assert decision.kernel == "torch" == converted[0].kernel
        _, (timed,) = sparsify_for_inference(model, batch_size=4 * 256, repeats=1, warmup=0, min_gain=-10.0)
        assert timed.kernel == "torch" and timed.tile in (None, *ROW_TILES)  # torch's tiles are candidates again
    finally:
        native_kernel.cache_clear()
    with pytest.raises(ValueError, match="kernels="):
        sparsify_for_inference(model, batch_size=4, kernels=["mkl"])


@pytest.mark.parametrize("tile", [None, 7, 64])
def test_a_tiled_csr_product_computes_what_the_whole_one_does(tile):
    torch.manual_seed(0)
    linear = masked(nn.Sequential(nn.Linear(40, 24)))[0]
    layer = CsrLinear.from_linear(linear, tile)
    assert layer.weight.crow_indices().dtype == layer.weight.col_indices().dtype == torch.int32
    for x in (torch.randn(50, 40), torch.randn(40, 50).t(), torch.randn(2, 25, 40)):  # row-major, transposed, tokens
        with torch.inference_mode():
            out = layer(x)
            assert out.shape == (*x.shape[:-1], 24)
            assert max_relative_error(linear(x), out) <= 1e-5


def test_layers_that_see_many_rows_also_time_torchs_tiled_product():
    torch.manual_seed(0)
    model = masked(nn.Sequential(nn.Linear(32, 32)))
    _, (decision,) = sparsify_for_inference(model, batch_size=4 * 256, repeats=1, warmup=0, min_gain=-10.0,
                                            kernels=["torch"])  # fmt: skip
    assert decision.layout == "csr" and decision.tile in (None, *ROW_TILES)  # whichever timed faster, recorded
    _, (small,) = sparsify_for_inference(model, batch_size=8, repeats=1, warmup=0, min_gain=-10.0, kernels=["torch"])
    assert small.tile is None  # too few rows to tile
    _, (either,) = sparsify_for_inference(model, batch_size=4 * 256, repeats=1, warmup=0, min_gain=-10.0)
    if native_kernel() is not None:  # the native product tiles by itself; torch's is timed untiled beside it
        assert either.kernel in ("native", "torch") and either.tile is None


def test_a_linear_takes_leading_token_dimensions():
    torch.manual_seed(0)
    model = masked(nn.Sequential(nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 8)))
    converted, _ = sparsify_for_inference(model, batch_size=2, force={"0": "csr", "2": "csr"})
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        out = converted(x)
        assert out.shape == (2, 5, 8)
        assert max_relative_error(model(x), out) <= 1e-5


def test_forced_layouts_and_zeros_without_a_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4)).eval()
    with torch.no_grad():
        model[0].weight[torch.rand(10, 12) > 0.2] = 0  # sparsity from the zeros alone, no weight_mask
    converted, decisions = sparsify_for_inference(model, batch_size=4, force={"0": "csr", "2": "dense"})
    assert isinstance(converted[0], CsrLinear) and converted[0].weight.layout == torch.sparse_csr
    assert converted[0].nnz == int(torch.count_nonzero(model[0].weight))
    # A Linear kept dense takes a CSR layer's transposed output row-major; the original is untouched.
    assert type(converted[2]) is RowMajorLinear and type(model[0]) is nn.Linear and type(model[2]) is nn.Linear
    assert all(torch.equal(a, b) for a, b in zip(converted[2].state_dict().values(), model[2].state_dict().values()))
    assert [d.layout for d in decisions] == ["csr", "dense"]
    x = torch.randn(4, 12)
    with torch.inference_mode():
        assert max_relative_error(model(x), converted(x)) <= 1e-5


def test_timed_decisions_record_every_linear():
    torch.manual_seed(0)
    model = masked(vit(dim=16, depth=1, heads=2, patch=7))
    x = torch.randn(2, 1, 28, 28)
    converted, decisions = sparsify_for_inference(model, 2, threads=1, example_input=x, warmup=1, repeats=2)
    assert [d.name for d in decisions] == linear_names(model)
    assert all(d.layout in ("dense", "csr") and d.dense_ms > 0 and d.sparse_ms > 0 for d in decisions)
    assert all((d.kernel in ("native", "torch")) == (d.layout == "csr") for d in decisions)
    assert {d.rows for d in decisions if d.name.startswith("blocks")} == {2 * 17}  # batch x (16 patches + cls)
    with torch.inference_mode():
        assert max_relative_error(model(x), converted(x)) <= 1e-5


def test_the_benchmark_writes_its_records(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_inference.py"), "--quick", "--models", "mlp,vit",
                    "--densities", "0.1", "--json", str(out)], check=True, env=env, cwd=ROOT, capture_output=True)
    records = json.loads(out.read_text())
    assert len(records) == 2 and all(list(record) == KEYS for record in records)
    assert all(record["max_rel_error"] <= 1e-5 for record in records)
    script = str(ROOT / "scripts" / "bench_inference.py")
    wrong = subprocess.run([sys.executable, script, "--quick", "--kernels", "mkl"], env=env, cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
    assert wrong.returncode == 2 and "--kernels: choose from native, torch" in wrong.stderr


def test_converted_models_copy_and_convert_again_and_keep_nn_linear_output_contiguous():
    import copy

    torch.manual_seed(0)
    model = masked(nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)))
    x = torch.randn(5, 12)
    for kernels in (["torch"], ["native", "torch"]):
        converted, _ = sparsify_for_inference(model, batch_size=5, force="csr", kernels=kernels)
        clone = copy.deepcopy(converted)  # torch cannot deep-copy a CSR tensor; the layers clone theirs
        assert clone[0].weight is not converted[0].weight
        again, _ = sparsify_for_inference(converted, batch_size=5, force="csr")
        with torch.inference_mode():
            assert converted[0](x).is_contiguous()  # a caller's .view() works, as after nn.Linear
            for other in (clone, again):
                assert torch.equal(other(x), converted(x))
    half = CsrLinear.from_linear(model[0])  # torch's CSR product has no half: the densified weight computes
    with torch.inference_mode():
        assert max_relative_error(model[0](x), half.to(torch.bfloat16)(x.bfloat16()).float()) <= 2e-2


class TwoInputs(nn.Module):
    """A layer called by keyword, a layer reachable under two names, and a forward of two arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(8, 8)
        self.shared = nn.Linear(8, 8)
        self.alias = self.shared

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.alias(self.first(input=x)) + self.shared(y)


def test_example_inputs_of_several_arguments_keyword_calls_and_shared_layers():
    torch.manual_seed(0)
    model = masked(TwoInputs())
    x, y = torch.randn(3, 8), torch.randn(3, 8)
    converted, decisions = sparsify_for_inference(model, batch_size=1, example_input=(x, y), warmup=0, repeats=1,
                                                  min_gain=-10.0)  # fmt: skip
    assert [d.name for d in decisions] == ["first", "shared"] and all(d.rows == 3 for d in decisions)
    assert converted.shared is converted.alias and isinstance(converted.alias, CsrLinear)
    with torch.inference_mode():
        assert max_relative_error(model(x, y), converted(x, y)) <= 1e-5
    with pytest.raises(ValueError, match="force names 'fc', not a Linear or Conv2d of the model"):
        sparsify_for_inference(model, batch_size=1, force={"fc": "csr"})
