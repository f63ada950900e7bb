"""Sparse models that run faster at inference: masked ``nn.Linear`` layers recomputed with CSR weights.

A model trained with masks (``weight_mask`` buffers, ``rigl_repro.sparsity.masks``) still computes with dense
weight matrices, mostly zeros, so it is no faster than the dense model. ``sparsify_for_inference`` replaces each
``nn.Linear`` whose weight is sparse enough by a ``CsrLinear``, which keeps only the non-zero weights in torch's
CSR layout and multiplies with a sparse-dense product, where timing at the batch size the model will serve shows
it faster than the dense product; elsewhere the dense Linear stays. Whether CSR pays off depends on the layer's
shape and density, the number of rows it sees at once (batch x tokens) and the threads, so the decision is
measured per layer rather than guessed from the density.

Two CSR products are candidates: the project's own kernel (``native.py``, ``sparse_linear.c``: row-major input
and output, packed 64-row tiles, register accumulators), where the machine can build it, and torch's. The
native one was 1.3-1.7x faster than torch's on the MLP's and the ViT's projections at batch 128
(docs/benchmarks.md), so torch's tiled variants below are timed only where the native kernel is unavailable.

Torch's product form: for an input ``x`` of shape (rows, in) and a CSR weight ``W`` of shape (out, in),
``torch.addmm(bias[:, None], W, x.T.contiguous()).T`` (CSR times a row-major dense matrix, then a transposed view)
was the fastest form measured here: ``x @ W.T`` with ``W.T`` in CSR (a CSR right operand) was 4-10x slower
than the dense product, and ``torch.sparse.mm`` with a separate bias add up to 2x slower than ``addmm`` on
transformer-sized inputs. The output is a transposed view; the next CsrLinear's ``x.T.contiguous()`` then
costs nothing. Two refinements, each measured (docs/benchmarks.md): the CSR indices are 32-bit (torch makes
them 64-bit; the 32-bit ones are what the CPU's sparse BLAS takes, 10-40% faster here), and where a layer
sees many rows the product can run over ``tile`` rows at a time (256, 64 or 32; tiles are concatenated into the
same transposed output), so that the dense operand stays in cache: up to 1.6x faster for a 1024-wide input of
6,400 rows, and 1.1-1.7x for the MLP's 2048-wide layer at batch 128 in tiles of 32. Whether and how to tile are
more candidates the per-layer timing decides.

``nn.MultiheadAttention``, whose input projections are bare parameters, is first unpacked into four Linears
computing the same (``attention.py``), so its projections are decided like every other Linear.

Convolutions stay dense: convolution as unfold (im2col) followed by a CSR product was measured 4-10x slower
than torch's dense convolution at batch 32 on this CPU, because the unfolded input is k*k times larger than the
input and the dense convolution kernels (oneDNN) are far better tuned than the generic CSR product. Speeding up
sparse convolutions needs direct sparse convolution kernels or structured sparsity (docs/benchmarks.md,
"Sparse inference on the CPU").
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from rigl_repro.inference.attention import UnpackedAttention, unsupported
from rigl_repro.inference.native import native_kernel

DENSE = "dense"
CSR = "csr"
LAYOUTS = (DENSE, CSR)
NATIVE = "native"  # CSR products: the project's kernel (native.py) or torch's (MKL's sparse BLAS on the CPU)
TORCH = "torch"
KERNELS = (NATIVE, TORCH)
# Rows per tile of the tiled CSR product: each is tried where a layer sees at least twice as many rows.
ROW_TILES = (256, 64, 32)
# torch warns once per process that its CSR support is in beta; the products used here are tested.
_BETA_WARNING = "Sparse CSR tensor support is in beta state"


@dataclass(frozen=True)
class LayerDecision:
    """What ``sparsify_for_inference`` chose for one ``nn.Linear``: ``name`` (its module name), ``shape``
    (out_features, in_features), ``density`` (the share of non-zero weights), ``rows`` (rows of the timed input,
    batch x tokens), the median milliseconds of the dense and of the fastest CSR product (NaN where the layout
    was forced, nothing timed), the ``layout`` chosen (``"dense"`` or ``"csr"``) and, for CSR, ``kernel``
    (``"native"`` or ``"torch"``, the product) and ``tile`` (torch's product only: the rows per product, None
    for all at once)."""

    name: str
    shape: tuple[int, int]
    density: float
    rows: int
    dense_ms: float
    sparse_ms: float
    layout: str
    tile: int | None = None
    kernel: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_weight(linear: nn.Linear) -> torch.Tensor:
    """The weight the layer computes with: its weight times its ``weight_mask`` where it has one (a masked
    model keeps inactive weights at zero, but the mask is the authority), else the weight as it is, whose zeros
    then give the sparsity."""
    weight = linear.weight.detach()
    mask = getattr(linear, "weight_mask", None)
    if isinstance(mask, torch.Tensor) and mask.shape == weight.shape:
        weight = weight * mask.to(weight.dtype)
    return weight


def _native_takes(*tensors: torch.Tensor) -> bool:
    """Whether the native kernel computes with these (float32 on the CPU); elsewhere torch's product does."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


class CsrLinear(nn.Module):
    """``nn.Linear`` for inference with its weight in CSR layout (only the non-zero weights and their
    indices). ``kernel="native"``: the project's product (``native.py``), row-major in and out, falling back
    to torch's where the kernel cannot be built; ``"torch"``: ``y = x W^T + b`` as ``(W x^T + b[:, None])^T``,
    torch's fastest CSR form measured (module docstring), a transposed view.

    Inputs may have leading dimensions (batch, tokens, ...): they are flattened to rows and restored; with
    ``tile`` (torch's product), the product runs over that many rows at a time. No gradients (the CSR weight is
    a buffer): use it in eval mode under ``torch.no_grad``/``inference_mode``.
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
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_BETA_WARNING)
            csr = weight.detach().to_sparse_csr()
            self.register_buffer("weight", torch.sparse_csr_tensor(
                csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32), csr.values(), csr.shape,
                check_invariants=False,  # built from a valid CSR tensor; saying so silences torch's notice
            ))  # fmt: skip
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leading = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        weight = self.weight
        kernel = native_kernel() if self.kernel == NATIVE and _native_takes(rows, weight) else None
        if kernel is not None:
            bias = None if self.bias_column is None else self.bias_column.view(-1)
            return kernel.linear(rows, weight, bias).reshape(*leading, self.out_features)
        if self.tile is None or rows.shape[0] <= self.tile:
            out = self._product(rows)
        else:
            out = torch.cat([self._product(part) for part in rows.split(self.tile)], dim=1)
        return out.t().reshape(*leading, self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.out_features * self.in_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, density={density:.4f}, "
                f"kernel={self.kernel}, tile={self.tile}")  # fmt: skip


class RowMajorLinear(nn.Linear):
    """A dense ``nn.Linear`` that makes its input row-major first. A ``CsrLinear`` returns a transposed view,
    which torch's dense Linear takes on a path several times slower (the MLP's 10-way head: 1.3 ms against
    0.2 ms at batch 128); the copy costs far less. ``sparsify_for_inference`` gives the Linears it keeps dense
    this class (the parameters, buffers and outputs are the Linear's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous())


def median_ms(fn: Callable[[], Any], warmup: int = 3, repeats: int = 10) -> float:
    """Median wall-clock milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls (the median
    resists the outliers another process on the machine causes)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def paired_median_ms(first: Callable[[], Any], second: Callable[[], Any], warmup: int = 3,
                     repeats: int = 10) -> tuple[float, float]:  # fmt: skip
    """The median milliseconds of ``first()`` and of ``second()``, timed in alternation (first, second, first,
    ...) after ``warmup`` calls of each: a change in the machine's other load then weighs on both alike."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, kept in zip((first, second), times):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def _input_rows(model: nn.Module, example_input: torch.Tensor, names: list[str]) -> dict[str, int]:
    """Rows (product of the leading dimensions) of each named Linear's input in one forward pass."""
    modules = dict(model.named_modules())
    rows: dict[str, int] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:  # returns None: the input stays as it is
            rows.setdefault(name, math.prod(args[0].shape[:-1]))

        return hook

    hooks = [modules[name].register_forward_pre_hook(record(name)) for name in names]
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _forced_layout(force: str | Mapping[str, str] | None, name: str) -> str | None:
    layout = force.get(name) if isinstance(force, Mapping) else force
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"force={layout!r} for {name!r}: choose one of {', '.join(LAYOUTS)}")
    return layout


def unpack_attention(model: nn.Module) -> list[str]:
    """Replace every ``nn.MultiheadAttention`` of ``model`` (in place) by an ``UnpackedAttention`` computing the
    same with four Linears (``attention.py``), and return their names. One with learned key/value biases or
    zero attention stays as it is, dense, with a warning."""
    unpacked = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.MultiheadAttention):
            continue
        reason = unsupported(module) if name else "no parent module to replace it in (wrap it in one)"
        if reason is not None:
            warnings.warn(f"{name or 'the model'}: MultiheadAttention not converted ({reason}); its projections "
                          "stay dense", RuntimeWarning, stacklevel=3)  # fmt: skip
            continue
        _set_submodule(model, name, UnpackedAttention(module))
        unpacked.append(name)
    return unpacked


def sparsify_for_inference(
    model: nn.Module,
    batch_size: int,
    threads: int | None = None,
    *,
    example_input: torch.Tensor | None = None,
    force: str | Mapping[str, str] | None = None,
    min_gain: float = 0.05,
    max_density: float = 0.5,
    kernels: Sequence[str] = KERNELS,
    warmup: int = 3,
    repeats: int = 10,
    inplace: bool = False,
    seed: int = 0,
) -> tuple[nn.Module, list[LayerDecision]]:
    """``model`` (a copy, unless ``inplace``) with every ``nn.Linear`` that computes faster in CSR layout at
    ``batch_size`` replaced by a ``CsrLinear``, and one ``LayerDecision`` per Linear, in module order. Each
    ``nn.MultiheadAttention`` is first unpacked into Linears named ``<name>.q_proj``, ``.k_proj``, ``.v_proj``
    and ``.out_proj`` (``unpack_attention``), decided like the others.

    Each Linear is timed alone, dense against CSR, on a random input of its own width (``warmup`` calls, then
    the median of ``repeats``), with ``threads`` torch threads if given (restored afterwards): the thread count
    the model will run with changes which product is faster. The input's rows are ``batch_size``, or, with
    ``example_input`` (one batch as the model takes it), the rows each Linear really sees, e.g. batch x tokens
    in a transformer. CSR is chosen where it is at least ``min_gain`` (a share) faster, so timing noise does
    not flip layers that are even. Layers denser than ``max_density`` stay dense untimed (CSR's indices then
    cost more than the zeros it skips). ``kernels``: the CSR products to consider (``"native"``, ``"torch"``;
    the native one only where it can be built); every one is timed, and torch's tiled variants where the native
    kernel is not a candidate. ``force``: ``"dense"`` or ``"csr"`` for every Linear, or a mapping from
    module names to layouts, decided without timing (CSR then takes the first available of ``kernels``). The
    model is put in eval mode; outputs equal the masked dense model's up to the summation order of floating
    point.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unknown = [kernel for kernel in kernels if kernel not in KERNELS]
    if unknown or not kernels:
        raise ValueError(f"kernels={list(kernels)!r}: choose from {', '.join(KERNELS)}")
    available = [kernel for kernel in kernels if kernel != NATIVE or native_kernel() is not None] or [TORCH]
    converted = model if inplace else copy.deepcopy(model)
    converted.eval()
    unpack_attention(converted)
    linears = [(name, module) for name, module in converted.named_modules() if type(module) is nn.Linear]
    names = [name for name, _ in linears]
    rows = _input_rows(converted, example_input, names) if example_input is not None else {}
    previous_threads = torch.get_num_threads()
    generator = torch.Generator().manual_seed(seed)
    decisions: list[LayerDecision] = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for name, linear in linears:
            weight = effective_weight(linear)
            density = float(torch.count_nonzero(weight)) / max(1, weight.numel())
            n_rows = rows.get(name, batch_size)
            layout = _forced_layout(force, name)
            dense_ms = sparse_ms = math.nan
            if layout is None and density > max_density:
                layout = DENSE
            kernel, tile = available[0], None
            if layout is None:
                x = torch.randn(n_rows, linear.in_features, generator=generator, dtype=weight.dtype)
                x = x.to(weight.device)
                kernels_here = [k for k in available if k != NATIVE or _native_takes(weight)] or [TORCH]
                candidates = [(candidate, None) for candidate in kernels_here]
                if NATIVE not in kernels_here:
                    candidates += [(TORCH, tile) for tile in ROW_TILES if n_rows >= 2 * tile]
                with torch.inference_mode():
                    timed = {}  # (kernel, tile): (dense ms, CSR ms), each pair timed in alternation
                    for candidate in candidates:
                        layer = CsrLinear(weight, linear.bias, candidate[1], candidate[0])
                        timed[candidate] = paired_median_ms(lambda: linear(x), lambda: layer(x), warmup, repeats)
                kernel, tile = min(timed, key=lambda c: timed[c][1] / timed[c][0])
                dense_ms, sparse_ms = timed[kernel, tile]
                layout = CSR if sparse_ms < dense_ms * (1.0 - min_gain) else DENSE
            if layout == CSR:
                _set_submodule(converted, name, CsrLinear(weight, linear.bias, tile, kernel))
            else:
                kernel = tile = None
                linear.__class__ = RowMajorLinear  # the converted copy's own module: same state, row-major input
            decisions.append(LayerDecision(name, (linear.out_features, linear.in_features), density, n_rows,
                                           dense_ms, sparse_ms, layout, tile, kernel))  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)
    return converted, decisions


def load_for_inference(
    path: str | os.PathLike,
    batch_size: int,
    threads: int | None = None,
    **options: Any,
) -> tuple[nn.Module, dict[str, Any], list[LayerDecision]]:
    """An export (``scripts/export.py``, ``rigl_repro.export``) loaded on the CPU as a model for inference at
    ``batch_size``: ``sparsify_for_inference`` decides each Linear's layout by timing (``options`` are its
    keywords: ``example_input``, ``force``, ``min_gain``, ...). Returns the model, the export's metadata with
    the decisions added under ``inference_layers``, and the decisions."""
    from rigl_repro.export import load_export  # imported here: it loads the run machinery, CsrLinear needs none

    model, metadata = load_export(path, "cpu")
    converted, decisions = sparsify_for_inference(model, batch_size, threads, inplace=True, **options)
    return converted, {**metadata, "inference_layers": [decision.as_dict() for decision in decisions]}, decisions


def max_relative_error(reference: torch.Tensor, output: torch.Tensor) -> float:
    """max |output - reference| / max |reference| (0 when both are all zeros)."""
    scale = reference.abs().max().item()
    diff = (output - reference).abs().max().item()
    return diff / scale if scale > 0 else diff


__all__ = [
    "CSR", "CsrLinear", "DENSE", "KERNELS", "LayerDecision", "NATIVE", "ROW_TILES", "RowMajorLinear", "TORCH",
    "effective_weight", "load_for_inference", "max_relative_error", "median_ms", "paired_median_ms",
    "sparsify_for_inference", "unpack_attention",
]  # fmt: skip
