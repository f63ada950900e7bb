"""The layers sparse inference puts in a model: ``CsrLinear`` (a Linear with a CSR weight, computed by the
native kernel or torch's CSR product), ``RowMajorLinear`` (a dense Linear that takes a transposed input on its
fast path) and ``CsrConv2d`` (a convolution with a CSR weight, computed by the native kernel). ``convert.py``
decides where each goes."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rigl_repro.inference.native import native_kernel

NATIVE = "native"  # CSR products: the project's kernel (native.py) or torch's (MKL's sparse BLAS on the CPU)
TORCH = "torch"
KERNELS = (NATIVE, TORCH)
# Rows per tile of the tiled CSR product: each is tried where a layer sees at least twice as many rows.
ROW_TILES = (256, 64, 32)
# torch warns once per process that its CSR support is in beta; the products used here are tested.
_BETA_WARNING = "Sparse CSR tensor support is in beta state"


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight a Linear or convolution computes with: its weight times its ``weight_mask`` where it has one
    (a masked model keeps inactive weights at zero, but the mask is the authority), else the weight as it is,
    whose zeros then give the sparsity."""
    weight = layer.weight.detach()
    mask = getattr(layer, "weight_mask", None)
    if isinstance(mask, torch.Tensor) and mask.shape == weight.shape:
        weight = weight * mask.to(weight.dtype)
    return weight


def csr_int32(weight: torch.Tensor) -> torch.Tensor:
    """A 2-d weight in torch's CSR layout with 32-bit indices (what the CPU's sparse BLAS and the native kernel
    take; torch makes them 64-bit)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_BETA_WARNING)
        csr = weight.detach().to_sparse_csr()
        return torch.sparse_csr_tensor(
            csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32), csr.values(), csr.shape,
            check_invariants=False,  # built from a valid CSR tensor; saying so silences torch's notice
        )  # fmt: skip


def native_takes(*tensors: torch.Tensor) -> bool:
    """Whether the native kernel computes with these (float32 on the CPU); elsewhere torch's product does."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


# Floating dtypes torch's CSR product takes on the CPU; others (half, bfloat16) multiply the densified weight.
_CSR_DTYPES = (torch.float32, torch.float64)


class _CsrModule(nn.Module):
    """A module holding CSR buffers, which ``copy.deepcopy`` of a tensor cannot copy (torch reaches for the
    storage a CSR tensor does not have): its deep copy clones them instead, so converted models copy as any
    model does (and can be converted again)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _CsrModule:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key == "_buffers":
                value = {name: buffer.clone() if buffer is not None and buffer.layout == torch.sparse_csr
                         else copy.deepcopy(buffer, memo) for name, buffer in value.items()}  # fmt: skip
            else:
                value = copy.deepcopy(value, memo)
            clone.__dict__[key] = value
        return clone


class CsrLinear(_CsrModule):
    """``nn.Linear`` for inference with its weight in CSR layout (only the non-zero weights and their
    indices). ``kernel="native"``: the project's product (``native.py``), row-major in and out, falling back
    to torch's where the kernel cannot be built; ``"torch"``: ``y = x W^T + b`` as ``(W x^T + b[:, None])^T``,
    torch's fastest CSR form measured (``convert``'s docstring), a transposed view.

    Inputs may have leading dimensions (batch, tokens, ...): they are flattened to rows and restored; with
    ``tile`` (torch's product), the product runs over that many rows at a time. The output is contiguous, as
    ``nn.Linear``'s is. No gradients (the CSR weight is a buffer): use it in eval mode under
    ``torch.no_grad``/``inference_mode``. Its state dict holds ``weight`` (CSR) and ``bias_column`` (out, 1):
    it loads into a ``CsrLinear`` of the same non-zero count only.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, tile: int | None = None,
                 kernel: str = TORCH) -> None:  # fmt: skip
        super().__init__()
        if tile is not None and tile < 1:
            raise ValueError(f"tile must be >= 1 rows, got {tile}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r}: choose one of {', '.join(KERNELS)}")
        if kernel == NATIVE and tile is not None:
            raise ValueError("the native kernel tiles its input itself: tile must be None")
        self.out_features, self.in_features = weight.shape
        self.tile = tile
        self.kernel = kernel
        self.register_buffer("weight", csr_int32(weight))
        self.register_buffer("bias_column", None if bias is None else bias.detach().reshape(-1, 1).clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, tile: int | None = None, kernel: str = TORCH) -> CsrLinear:
        """The layer computing what ``linear`` (with its mask) computes."""
        return cls(effective_weight(linear), linear.bias, tile, kernel)

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        """(rows, in) -> (out, rows): the weight times the rows' transpose, made row-major for the kernel."""
        columns = rows.t().contiguous()
        if self.bias_column is None:
            return torch.mm(self.weight, columns)
        return torch.addmm(self.bias_column, self.weight, columns)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # nn.Linear's name: callers may pass input=x
        leading = input.shape[:-1]
        rows = input.reshape(-1, self.in_features)
        weight = self.weight
        kernel = native_kernel() if self.kernel == NATIVE and native_takes(rows, weight) else None
        if kernel is not None:
            bias = None if self.bias_column is None else self.bias_column.view(-1)
            # check=False: the weight was built from a dense tensor by csr_int32, valid by construction
            return kernel.linear(rows, weight, bias, check=False).reshape(*leading, self.out_features)
        if rows.dtype not in _CSR_DTYPES:
            bias = None if self.bias_column is None else self.bias_column.view(-1)
            return F.linear(rows, weight.to_dense().to(rows.dtype), bias).reshape(*leading, self.out_features)
        if self.tile is None or rows.shape[0] <= self.tile:
            out = self._product(rows)
        else:
            out = torch.cat([self._product(part) for part in rows.split(self.tile)], dim=1)
        # contiguous, as nn.Linear's output: a transposed view breaks a caller's .view()
        return out.t().contiguous().reshape(*leading, self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.out_features * self.in_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, density={density:.4f}, "
                f"kernel={self.kernel}, tile={self.tile}")  # fmt: skip


class RowMajorLinear(nn.Linear):
    """A dense ``nn.Linear`` that makes its input row-major first: torch's dense Linear takes a transposed view
    on a path several times slower (the MLP's 10-way head: 1.3 ms against 0.2 ms at batch 128, measured when
    ``CsrLinear`` still returned one); the copy costs far less. ``sparsify_for_inference`` gives the Linears it
    keeps dense this class (the parameters, buffers and outputs are the Linear's)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return super().forward(input.contiguous())


def conv_geometry(conv: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | str:
    """The (stride, padding, dilation) pairs the native convolution takes for ``conv``, or why it cannot take
    it (groups, a padding mode other than zeros, "same" padding that is not the same on both sides)."""
    if conv.groups != 1:
        return f"groups={conv.groups}"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r}"
    padding = conv.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        if any(s != 1 for s in conv.stride) or any(d * (k - 1) % 2 for d, k in zip(conv.dilation, conv.kernel_size)):
            return "padding='same' that is not the same on both sides"
        padding = tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
    return tuple(conv.stride), tuple(padding), tuple(conv.dilation)  # type: ignore[return-value]


class CsrConv2d(_CsrModule):
    """``nn.Conv2d`` (one group, zero padding) for inference with its weight in CSR layout, flattened to
    (out_channels, in_channels * kh * kw), computed by the native kernel's convolution (``native.py``), which
    gathers each tile of the unfolded input as it packs it. Where the kernel is unavailable or the input is not
    float32 on the CPU, the dense convolution of the same weight computes the same. A channels-last input gives
    a channels-last output, as ``nn.Conv2d``. No gradients; eval mode."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        geometry = conv_geometry(conv)
        if isinstance(geometry, str):
            raise ValueError(f"the native convolution does not take {geometry}")
        self.stride, self.padding, self.dilation = geometry
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.register_buffer("weight", csr_int32(effective_weight(conv).reshape(conv.out_channels, -1)))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # nn.Conv2d's name: callers may pass input=x
        single = input.dim() == 3  # (C, H, W), as nn.Conv2d takes it
        batch = input.unsqueeze(0) if single else input
        kernel = native_kernel() if native_takes(batch, self.weight) else None
        if kernel is not None:
            out = kernel.conv2d(batch, self.weight, self.bias, self.kernel_size, self.stride, self.padding,
                                self.dilation, check=False)  # fmt: skip
        else:
            dense = self.weight.to_dense().reshape(self.out_channels, self.in_channels, *self.kernel_size)
            out = F.conv2d(batch, dense.to(batch.dtype), self.bias, self.stride, self.padding, self.dilation)
            return out.squeeze(0) if single else out
        if not single and batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)
        return out.squeeze(0) if single else out

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.weight.shape[0] * self.weight.shape[1])
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, density={density:.4f}")  # fmt: skip


__all__ = [
    "CsrConv2d", "CsrLinear", "KERNELS", "NATIVE", "ROW_TILES", "RowMajorLinear", "TORCH", "conv_geometry",
    "csr_int32", "effective_weight", "native_takes",
]  # fmt: skip
