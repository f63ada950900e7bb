"""The native CSR kernel (rigl_repro/inference/sparse_kernels.c through native.py): what it computes, on every
path through its tiles and threads, and how it is built, cached and refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rigl_repro.inference import native as native_module
from rigl_repro.inference.native import NativeKernel, NativeKernelError, native_kernel

KERNEL = native_kernel()
needs_kernel = pytest.mark.skipif(KERNEL is None, reason="the native kernel cannot be built here (no C compiler)")


def sparse_weight(out: int, inp: int, density: float, seed: int = 0, empty_rows: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(out, inp, generator=generator) * (torch.rand(out, inp, generator=generator) < density)
    weight[:empty_rows] = 0  # output rows without a single non-zero
    return weight


def csr(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` in CSR layout with int32 indices, as CsrLinear keeps it."""
    full = weight.to_sparse_csr()
    return torch.sparse_csr_tensor(full.crow_indices().int(), full.col_indices().int(), full.values(), full.shape,
                                   check_invariants=True)


def relative_error(reference: torch.Tensor, output: torch.Tensor) -> float:
    return float((output - reference).abs().max() / reference.abs().max().clamp_min(1e-30))


# Rows covering each path: one row alone, the narrow tiles (8, 16, 32 columns), a full tile of 64, full tiles
# followed by a leftover of one row, of a narrow tile and of a wide one.
ROWS = [1, 2, 7, 8, 9, 16, 17, 33, 64, 65, 71, 100, 129, 200]


@needs_kernel
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_it_computes_the_dense_product(rows, with_bias):
    weight = sparse_weight(37, 53, 0.2, empty_rows=3)
    bias = torch.randn(37) if with_bias else None
    x = torch.randn(rows, 53)
    out = KERNEL.linear(x, csr(weight), bias, threads=1)
    assert out.shape == (rows, 37) and out.is_contiguous()
    assert relative_error(F.linear(x, weight, bias), out) <= 1e-6
    if with_bias:
        assert torch.equal(out[:, :3], bias[:3].expand(rows, 3))  # an empty row gives the bias exactly


@needs_kernel
@pytest.mark.parametrize("rows", [1, 5, 64, 130, 300])
def test_every_thread_count_gives_the_same_bits(rows):
    weight = sparse_weight(70, 40, 0.3)
    x, bias = torch.randn(rows, 40), torch.randn(70)
    sparse = csr(weight)
    one = KERNEL.linear(x, sparse, bias, threads=1)
    # 2 and 3 threads split the row tiles or the outputs, 7 leaves threads without tiles (or is more than the
    # outputs of a narrower weight, below).
    for threads in (2, 3, 7):
        assert torch.equal(KERNEL.linear(x, sparse, bias, threads=threads), one), threads
    narrow = csr(sparse_weight(5, 40, 0.3))
    assert torch.equal(KERNEL.linear(x, narrow, threads=7), KERNEL.linear(x, narrow, threads=1))


@needs_kernel
def test_threads_default_to_torchs_count():
    weight, x = sparse_weight(64, 64, 0.1), torch.randn(256, 64)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = KERNEL.linear(x, csr(weight))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(two, KERNEL.linear(x, csr(weight), threads=2))


@needs_kernel
def test_an_all_zero_weight_and_empty_inputs():
    empty = csr(torch.zeros(5, 6))
    assert empty.values().numel() == 0
    bias = torch.randn(5)
    assert torch.equal(KERNEL.linear(torch.randn(70, 6), empty, bias), bias.expand(70, 5))
    assert KERNEL.linear(torch.randn(0, 6), empty, bias).shape == (0, 5)


@needs_kernel
def test_a_non_contiguous_input_is_taken_as_its_values():
    weight = sparse_weight(12, 30, 0.3)
    x = torch.randn(30, 66).t()  # a transposed view, as torch's CSR product returns
    assert relative_error(F.linear(x, weight), KERNEL.linear(x, csr(weight))) <= 1e-6


@needs_kernel
def test_tensors_it_cannot_take_are_refused_before_c_sees_them():
    dense = sparse_weight(4, 6, 0.5)
    weight = csr(dense)
    with pytest.raises(NativeKernelError, match="x is torch.float64"):
        KERNEL.linear(torch.randn(3, 6, dtype=torch.float64), weight)
    with pytest.raises(NativeKernelError, match=r"x must be \(rows, 6\)"):
        KERNEL.linear(torch.randn(2, 3, 6), weight)
    with pytest.raises(NativeKernelError, match=r"x must be \(rows, 6\)"):
        KERNEL.linear(torch.randn(3, 5), weight)  # C would read past each row
    with pytest.raises(NativeKernelError, match="int32"):
        KERNEL.linear(torch.randn(3, 6), dense.to_sparse_csr())  # torch's own 64-bit indices
    with pytest.raises(NativeKernelError, match="2-d CSR"):
        KERNEL.linear(torch.randn(3, 6), dense)
    with pytest.raises(NativeKernelError, match="bias must have 4 entries"):
        KERNEL.linear(torch.randn(3, 6), weight, torch.randn(3))


def malformed(crow: list[int], col: list[int], shape: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor torch builds without checking it (its default), whose indices do not fit ``shape``."""
    return torch.sparse_csr_tensor(torch.tensor(crow, dtype=torch.int32), torch.tensor(col, dtype=torch.int32),
                                   torch.ones(len(col)), shape)  # fmt: skip


@needs_kernel
@pytest.mark.filterwarnings("ignore:Sparse")
@pytest.mark.parametrize("crow, col, shape", [([0, 1], [0], (3, 4)),            # too few row pointers
                                              ([0, 1, 2], [0, 1000], (2, 4)),   # a column past the last
                                              ([0, 1, 50], [0, 1], (2, 4)),     # more non-zeros than stored
                                              ([0, 2, 1], [0, 1], (2, 4)),      # row pointers going back
                                              ([0, 1, 2], [0, -1], (2, 4))])    # a negative column  # fmt: skip
def test_a_malformed_csr_weight_is_refused_unless_the_caller_vouches_for_it(crow, col, shape):
    weight = malformed(crow, col, shape)
    with pytest.raises(NativeKernelError, match=r"indices do not describe a \d+x4 matrix"):
        KERNEL.linear(torch.randn(3, 4), weight)


@needs_kernel
def test_it_is_built_once_into_the_cache_and_found_there(tmp_path, monkeypatch):
    monkeypatch.setenv(native_module.CACHE_VARIABLE, str(tmp_path))
    compiler = native_module._compiler()
    library = native_module._build(compiler, native_module.cache_dir())
    assert library.parent == tmp_path and library.name.startswith("sparse_kernels-") and library.suffix == ".so"
    assert [path.name for path in tmp_path.iterdir()] == [library.name]  # no scratch left behind
    built_at = library.stat().st_mtime_ns
    assert native_module._build(compiler, tmp_path) == library and library.stat().st_mtime_ns == built_at
    weight, x = sparse_weight(9, 11, 0.4), torch.randn(20, 11)
    assert relative_error(F.linear(x, weight), NativeKernel(library).linear(x, csr(weight))) <= 1e-6


def test_a_failed_build_warns_once_and_leaves_none(tmp_path, monkeypatch):
    failing = tmp_path / "cc"
    failing.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo fake 1.0; exit 0; }\necho "fatal: no" >&2\nexit 1\n')
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    monkeypatch.setenv(native_module.CACHE_VARIABLE, str(tmp_path / "cache"))
    native_kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match=r"native sparse kernel unavailable \(.*fatal: no\)"):
            assert native_kernel() is None
        assert native_kernel() is None  # cached: the build is not retried, nor the warning repeated
    finally:
        native_kernel.cache_clear()


def test_it_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(native_module.ENABLE_VARIABLE, "0")
    native_kernel.cache_clear()
    try:
        assert native_kernel() is None
    finally:
        native_kernel.cache_clear()


# (batch, channels, height, width, out, kernel, stride, padding, dilation): 3x3 as in WRN-22-2, strided, 1x1, a
# rectangular kernel with uneven stride, padding and dilation, a kernel larger than the input, 325 output pixels
# (packed tiles straddle images; rows of 13 leave partial vectors), and a rectangular dilated kernel at stride 1
# on rows of 19 (the direct path's offsets and its last partial vector).
CONVOLUTIONS = [
    (2, 3, 8, 8, 5, (3, 3), (1, 1), (1, 1), (1, 1)),
    (3, 4, 9, 7, 6, (3, 3), (2, 2), (1, 1), (1, 1)),
    (1, 2, 10, 10, 3, (1, 1), (1, 1), (0, 0), (1, 1)),
    (2, 5, 11, 9, 4, (3, 2), (2, 1), (1, 0), (1, 2)),
    (1, 2, 3, 3, 4, (5, 5), (1, 1), (1, 1), (1, 1)),
    (5, 16, 5, 13, 16, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 3, 7, 19, 5, (2, 3), (1, 1), (0, 2), (2, 1)),
]


@needs_kernel
@pytest.mark.parametrize("batch, channels, height, width, out, kernel, stride, padding, dilation", CONVOLUTIONS)
def test_its_convolution_computes_the_dense_one(batch, channels, height, width, out, kernel, stride, padding,
                                                dilation):  # fmt: skip
    torch.manual_seed(0)
    weight = torch.randn(out, channels, *kernel) * (torch.rand(out, channels, *kernel) < 0.3)
    weight[0] = 0  # an output channel without a single non-zero
    bias, x = torch.randn(out), torch.randn(batch, channels, height, width)
    reference = F.conv2d(x, weight, bias, stride, padding, dilation)
    sparse = csr(weight.reshape(out, -1))
    one = KERNEL.conv2d(x, sparse, bias, kernel, stride, padding, dilation, threads=1)
    assert one.shape == reference.shape and relative_error(reference, one) <= 1e-6
    assert torch.equal(one[:, 0], bias[0].expand_as(one[:, 0]))
    for threads in (2, 3):  # over pixel tiles or over output channels, the same bits
        assert torch.equal(KERNEL.conv2d(x, sparse, bias, kernel, stride, padding, dilation, threads=threads), one)
    assert relative_error(F.conv2d(x, weight, None, stride, padding, dilation),
                          KERNEL.conv2d(x, sparse, None, kernel, stride, padding, dilation)) <= 1e-6  # fmt: skip


@needs_kernel
def test_convolutions_it_cannot_take_are_refused_before_c_sees_them():
    weight = csr(torch.randn(4, 2 * 9))
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(NativeKernelError, match="does not fit 3 channels"):
        KERNEL.conv2d(torch.randn(1, 3, 5, 5), weight, None, (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(NativeKernelError, match=r"x must be \(batch, channels, height, width\)"):
        KERNEL.conv2d(x[0], weight, None, (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(NativeKernelError, match="smaller than the 3x3 kernel"):
        KERNEL.conv2d(torch.randn(1, 2, 2, 2), weight, None, (3, 3), (1, 1), (0, 0), (1, 1))
    with pytest.raises(NativeKernelError, match="stride and dilation must be >= 1"):
        KERNEL.conv2d(x, weight, None, (3, 3), (0, 1), (1, 1), (1, 1))
    with pytest.raises(NativeKernelError, match="bias must have 4 entries"):
        KERNEL.conv2d(x, weight, torch.randn(2), (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(NativeKernelError, match="below 2\\*\\*31"):  # ctypes would wrap it to a negative stride
        KERNEL.conv2d(x, weight, None, (3, 3), (1, 2**64 - 1), (1, 1), (1, 1))
    with pytest.raises(NativeKernelError, match="5x0 pixels has nothing to convolve"):
        KERNEL.conv2d(torch.randn(1, 2, 5, 0), weight, None, (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(NativeKernelError, match="indices do not describe"):
        KERNEL.conv2d(x, malformed([0, 1, 2, 3, 4], [0, 1, 2, 18], (4, 18)), None, (3, 3), (1, 1), (1, 1), (1, 1))
