"""The native CSR products (``sparse_kernels.c``): built once per machine with the system's C compiler, loaded
with ctypes, and used by ``CsrLinear`` and ``CsrConv2d`` where the per-layer timing finds them fastest.

Why a kernel of our own: torch's CPU CSR product (MKL's sparse BLAS) reaches 1.4-2x over the dense product at
density 0.1 where reading only the non-zeros allows far more; the kernel packs the input 64 rows at a time so
that each non-zero weight is one broadcast and a few vector multiply-adds into register accumulators
(``sparse_kernels.c`` says how, docs/benchmarks.md how fast); torch has no sparse convolution on the CPU, and
the kernel's convolution gathers each tile of the unfolded input as it packs it. It is compiled rather than
shipped because it is built for the CPU it runs on (``-march=native``); no compiler, or a failed build, leaves
torch's products (and dense convolutions), with one warning.

The shared library is cached under ``$RIGL_REPRO_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/rigl-repro/kernels``,
else ``~/.cache/rigl-repro/kernels``, named by a hash of the source, the compiler, its flags and the CPU's
features, so a home directory shared between different machines never loads one built for another CPU.
``RIGL_REPRO_NATIVE_KERNEL=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).with_name("sparse_kernels.c")
# Tried in turn: the CPU's own instructions with OpenMP; without OpenMP (e.g. Apple's clang), on one thread; a
# compiler without -march=native, with OpenMP and without.
FLAG_SETS = (["-O3", "-march=native", "-fopenmp"], ["-O3", "-march=native"], ["-O3", "-fopenmp"], ["-O3"])
# gnu11: the kernel uses GNU vector extensions; contracting multiply-adds into FMA instructions is most of its speed.
COMMON_FLAGS = ["-shared", "-fPIC", "-std=gnu11", "-ffp-contract=fast"]
ENABLE_VARIABLE = "RIGL_REPRO_NATIVE_KERNEL"
CACHE_VARIABLE = "RIGL_REPRO_KERNEL_CACHE"


class NativeKernelError(RuntimeError):
    """The native product failed (memory for its tiles ran out) or was given tensors it cannot take."""


def cache_dir() -> Path:
    """Where built kernels are kept (module docstring)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rigl-repro" / "kernels"


def _cpu_features() -> str:
    """The CPU's model and feature flags (Linux), else the platform's description."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = [line for line in cpuinfo if line.startswith(("model name", "flags", "Features"))]
        return "".join(dict.fromkeys(lines))
    except OSError:
        return platform.platform() + platform.processor()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(compiler: str, target_dir: Path) -> Path:
    """Compile ``SOURCE`` into ``target_dir`` (atomically: concurrent processes may build the same file) and
    return the library's path; raises ``RuntimeError`` with the compiler's last words when no flag set works."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, version, *flags, *COMMON_FLAGS,
                                        platform.machine(), _cpu_features()]).encode()).hexdigest()[:16]  # fmt: skip
        library = target_dir / f"sparse_kernels-{key}.so"
        if library.exists():
            return library
        target_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target_dir) as scratch:
            built = Path(scratch) / library.name
            result = subprocess.run([compiler, *flags, *COMMON_FLAGS, str(SOURCE), "-o", str(built)],
                                    capture_output=True, text=True, timeout=300)  # fmt: skip
            if result.returncode == 0:
                os.replace(built, library)
                return library
            errors.append((result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"])
    raise RuntimeError(f"{compiler} failed: {errors[-1][0]}")


class NativeKernel:
    """The loaded ``sparse_kernels.c``: ``linear`` and ``conv2d``."""

    def __init__(self, library: Path) -> None:
        self.path = library
        self._lib = ctypes.CDLL(str(library))
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        self._linear = self._lib.rigl_sparse_linear
        self._linear.argtypes = [pointer, pointer, pointer, pointer, size, size, size, pointer, pointer, ctypes.c_int]
        self._linear.restype = ctypes.c_int
        self._conv2d = self._lib.rigl_sparse_conv2d
        self._conv2d.argtypes = [pointer, pointer, pointer, pointer, size, pointer, pointer, pointer, ctypes.c_int]
        self._conv2d.restype = ctypes.c_int

    @staticmethod
    def _csr_parts(weight: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None,
                   check: bool) -> list[torch.Tensor]:  # fmt: skip
        """The weight's crow, col and values, contiguous, after the checks that guard the raw pointers (with
        ``check``, also the CSR structure itself: O(non-zeros), vectorised)."""
        if weight.layout != torch.sparse_csr or weight.dim() != 2:
            raise NativeKernelError(f"the native product takes a 2-d CSR weight, got {weight.layout}")
        crow, col, values = weight.crow_indices(), weight.col_indices(), weight.values()
        if crow.dtype != torch.int32 or col.dtype != torch.int32:
            raise NativeKernelError(f"the native product takes int32 CSR indices, got {crow.dtype}")
        for name, tensor in (("x", x), ("weight", values), ("bias", bias)):
            if tensor is not None and (tensor.dtype != torch.float32 or tensor.device.type != "cpu"):
                raise NativeKernelError(f"the native product takes float32 CPU tensors: {name} is {tensor.dtype} "
                                        f"on {tensor.device}")  # fmt: skip
        if bias is not None and bias.numel() != weight.shape[0]:
            raise NativeKernelError(f"bias must have {weight.shape[0]} entries, got {bias.numel()}")
        if check:
            rows, columns = weight.shape
            nnz = col.numel()
            valid = (crow.numel() == rows + 1 and values.numel() == nnz and int(crow[0]) == 0
                     and int(crow[-1]) == nnz and bool((crow[1:] >= crow[:-1]).all())
                     and (nnz == 0 or (int(col.min()) >= 0 and int(col.max()) < columns)))  # fmt: skip
            if not valid:
                raise NativeKernelError(f"the CSR weight's indices do not describe a {rows}x{columns} matrix")
        return [crow.contiguous(), col.contiguous(), values.contiguous()]

    def _run(self, function: Any, parts: list[torch.Tensor], bias: torch.Tensor | None, *args: Any) -> None:
        crow, col, values = parts
        bias = None if bias is None else bias.contiguous()
        status = function(crow.data_ptr(), col.data_ptr(), values.data_ptr(),
                          None if bias is None else bias.data_ptr(), *args)  # fmt: skip
        if status != 0:
            raise NativeKernelError("the native product ran out of memory for its input tiles")

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               threads: int | None = None, check: bool = True) -> torch.Tensor:  # fmt: skip
        """``x @ weight.T + bias``, row-major, for rows ``x`` (rows, in) and a CSR ``weight`` (out, in) with
        int32 indices, float32 on the CPU. ``threads``: default torch's thread count. The checks here guard
        the raw pointers handed to C; ``check=False`` skips the O(non-zeros) one of the CSR structure, for a
        weight known valid (``CsrLinear`` builds its own from a dense tensor and skips it)."""
        parts = self._csr_parts(weight, x, bias, check)
        out_features, in_features = weight.shape
        if x.dim() != 2 or x.shape[1] != in_features:
            raise NativeKernelError(f"x must be (rows, {in_features}) for a weight of {in_features} columns, got "
                                    f"{tuple(x.shape)}")  # fmt: skip
        x = x.contiguous()
        y = torch.empty(x.shape[0], out_features, dtype=torch.float32)
        if x.shape[0] and out_features:
            self._run(self._linear, parts, bias, out_features, in_features, x.shape[0], x.data_ptr(), y.data_ptr(),
                      threads or torch.get_num_threads())  # fmt: skip
        return y

    def conv2d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kernel_size: tuple[int, int],
               stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
               threads: int | None = None, check: bool = True) -> torch.Tensor:  # fmt: skip
        """``F.conv2d(x, W, bias, stride, padding, dilation)`` (zero padding, one group) for an NCHW ``x`` and
        ``W`` given as the CSR ``weight`` (out, channels * kh * kw) of its flattened (out, channels, kh, kw)
        form, int32 indices, float32 on the CPU (``check`` as for ``linear``). Returns NCHW."""
        parts = self._csr_parts(weight, x, bias, check)
        if x.dim() != 4:
            raise NativeKernelError(f"x must be (batch, channels, height, width), got {tuple(x.shape)}")
        batch, channels, height, width = x.shape
        (kernel_h, kernel_w), (stride_h, stride_w) = kernel_size, stride
        (pad_h, pad_w), (dilation_h, dilation_w) = padding, dilation
        if weight.shape[1] != channels * kernel_h * kernel_w:
            raise NativeKernelError(f"a weight of {weight.shape[1]} columns does not fit {channels} channels of "
                                    f"{kernel_h}x{kernel_w} kernels")  # fmt: skip
        geometry = (kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w)
        if min(geometry) < 1 or min(pad_h, pad_w) < 0 or max(*geometry, pad_h, pad_w) >= 2**31:
            raise NativeKernelError("kernel, stride and dilation must be >= 1 and padding >= 0 (all below 2**31)")
        if height < 1 or width < 1:
            raise NativeKernelError(f"an input of {height}x{width} pixels has nothing to convolve")
        out_h = (height + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
        out_w = (width + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
        if out_h < 1 or out_w < 1:
            raise NativeKernelError(f"a {height}x{width} input is smaller than the {kernel_h}x{kernel_w} kernel")
        x = x.contiguous()
        y = torch.empty(batch, weight.shape[0], out_h, out_w, dtype=torch.float32)
        shape = (ctypes.c_int64 * 14)(batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                                      pad_w, dilation_h, dilation_w, out_h, out_w)  # fmt: skip
        if y.numel():
            self._run(self._conv2d, parts, bias, weight.shape[0], shape, x.data_ptr(), y.data_ptr(),
                      threads or torch.get_num_threads())  # fmt: skip
        return y


@functools.cache
def native_kernel() -> NativeKernel | None:
    """The native kernel, built on first use (cached per process and on disk), or None, with one warning
    saying why, where it cannot be built or is turned off by ``RIGL_REPRO_NATIVE_KERNEL=0``."""
    if os.environ.get(ENABLE_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    compiler = _compiler()
    try:
        if compiler is None:
            raise RuntimeError("no C compiler found (set CC)")
        return NativeKernel(_build(compiler, cache_dir()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(f"rigl_repro.inference: native sparse kernel unavailable ({error}); CSR layers use torch's "
                      "product", RuntimeWarning, stacklevel=2)  # fmt: skip
        return None


__all__ = ["NativeKernel", "NativeKernelError", "cache_dir", "native_kernel"]
