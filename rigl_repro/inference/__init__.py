"""Sparse inference on the CPU: masked models converted so that their sparse Linear layers compute with CSR
weights where that is measured faster (``convert``), through the project's own CSR kernel where the machine can
build it (``native``, ``sparse_linear.c``) or torch's."""

from rigl_repro.inference.attention import UnpackedAttention
from rigl_repro.inference.convert import (
    CSR,
    DENSE,
    KERNELS,
    NATIVE,
    ROW_TILES,
    TORCH,
    CsrLinear,
    LayerDecision,
    RowMajorLinear,
    effective_weight,
    load_for_inference,
    max_relative_error,
    median_ms,
    paired_median_ms,
    sparsify_for_inference,
    unpack_attention,
)
from rigl_repro.inference.native import NativeKernel, NativeKernelError, native_kernel

__all__ = [
    "CSR", "CsrLinear", "DENSE", "KERNELS", "LayerDecision", "NATIVE", "NativeKernel", "NativeKernelError",
    "ROW_TILES", "RowMajorLinear", "TORCH", "effective_weight", "load_for_inference", "max_relative_error",
    "UnpackedAttention", "median_ms", "paired_median_ms", "native_kernel", "sparsify_for_inference",
    "unpack_attention",
]  # fmt: skip
