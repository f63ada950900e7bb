"""Sparse inference on the CPU: masked models converted so that their sparse Linear and convolution layers
compute with CSR weights where that is measured faster (``convert``), with the layers of ``layers`` and
``attention``, through the project's own kernels where the machine can build them (``native``,
``sparse_kernels.c``) or torch's CSR product."""

from rigl_repro.inference.attention import UnpackedAttention
from rigl_repro.inference.convert import (
    CSR,
    DENSE,
    LayerDecision,
    load_for_inference,
    max_relative_error,
    median_ms,
    paired_median_ms,
    sparsify_for_inference,
    unpack_attention,
)
from rigl_repro.inference.layers import (
    KERNELS,
    NATIVE,
    ROW_TILES,
    TORCH,
    CsrConv2d,
    CsrLinear,
    RowMajorLinear,
    effective_weight,
)
from rigl_repro.inference.native import NativeKernel, NativeKernelError, native_kernel

__all__ = [
    "CSR", "CsrConv2d", "CsrLinear", "DENSE", "KERNELS", "LayerDecision", "NATIVE", "NativeKernel",
    "NativeKernelError", "ROW_TILES", "RowMajorLinear", "TORCH", "UnpackedAttention", "effective_weight",
    "load_for_inference", "max_relative_error", "median_ms", "native_kernel", "paired_median_ms",
    "sparsify_for_inference", "unpack_attention",
]  # fmt: skip
