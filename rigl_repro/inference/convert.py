"""Sparse models that run faster at inference: masked ``nn.Linear`` and ``nn.Conv2d`` layers recomputed with
CSR weights.

A model trained with masks (``weight_mask`` buffers, ``rigl_repro.sparsity.masks``) still computes with dense
weight matrices, mostly zeros, so it is no faster than the dense model. ``sparsify_for_inference`` replaces each
``nn.Linear`` whose weight is sparse enough by a ``CsrLinear`` (and each convolution by a ``CsrConv2d``), which
keeps only the non-zero weights in torch's CSR layout and multiplies with a sparse-dense product, where timing
at the batch size the model will serve shows it faster than the dense product; elsewhere the dense layer stays.
Whether CSR pays off depends on the layer's shape and density, the number of rows it sees at once (batch x
tokens) and the threads, so the decision is measured per layer rather than guessed from the density.

Two CSR products are candidates: the project's own kernel (``native.py``, ``sparse_kernels.c``: row-major input
and output, packed 64-row tiles, register accumulators), where the machine can build it, and torch's. The
native one was 1.3-1.7x faster than torch's on the MLP's and the ViT's projections at batch 128
(docs/benchmarks.md), so torch's tiled variants below are timed only where the native kernel is unavailable.

Torch's product form: for an input ``x`` of shape (rows, in) and a CSR weight ``W`` of shape (out, in),
``torch.addmm(bias[:, None], W, x.T.contiguous()).T`` (CSR times a row-major dense matrix, then a transposed view)
was the fastest form measured here: ``x @ W.T`` with ``W.T`` in CSR (a CSR right operand) was 4-10x slower
than the dense product, and ``torch.sparse.mm`` with a separate bias add up to 2x slower than ``addmm`` on
transformer-sized inputs. ``CsrLinear`` copies the transposed result row-major, as ``nn.Linear`` returns it
(a transposed view broke callers' ``.view()``; the copy costs the torch-only path a little, docs/benchmarks.md).
Two refinements, each measured (docs/benchmarks.md): the CSR indices are 32-bit (torch makes
them 64-bit; the 32-bit ones are what the CPU's sparse BLAS takes, 10-40% faster here), and where a layer
sees many rows the product can run over ``tile`` rows at a time (256, 64 or 32; tiles are concatenated into the
same transposed output), so that the dense operand stays in cache: up to 1.6x faster for a 1024-wide input of
6,400 rows, and 1.1-1.7x for the MLP's 2048-wide layer at batch 128 in tiles of 32. Whether and how to tile are
more candidates the per-layer timing decides.

``nn.MultiheadAttention``, whose input projections are bare parameters, is first unpacked into four Linears
computing the same (``attention.py``), so its projections are decided like every other Linear.

Convolutions (``nn.Conv2d``, one group, zero padding) take a CSR layout only through the native kernel
(``CsrConv2d``): it gathers each 64-pixel tile of the unfolded input as it packs it, so the unfolded input,
k*k times larger than the input, is never made whole. Torch has no sparse convolution on the CPU, and
unfold (im2col) followed by torch's CSR product was measured 4-10x slower than torch's dense convolution at
batch 32 here (docs/benchmarks.md, "Sparse inference on the CPU").
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
from rigl_repro.inference.layers import (
    KERNELS,
    NATIVE,
    ROW_TILES,
    TORCH,
    CsrConv2d,
    CsrLinear,
    RowMajorLinear,
    conv_geometry,
    effective_weight,
    native_takes,
)
from rigl_repro.inference.native import native_kernel

DENSE = "dense"
CSR = "csr"
LAYOUTS = (DENSE, CSR)


@dataclass(frozen=True)
class LayerDecision:
    """What ``sparsify_for_inference`` chose for one ``nn.Linear`` or ``nn.Conv2d``: ``name`` (its module
    name), ``shape`` (out_features, in_features; for a convolution out_channels, in_channels * kh * kw),
    ``density`` (the share of non-zero weights), ``rows`` (rows of the timed input, batch x tokens; for a
    convolution its output pixels, batch x height x width; 0 where not known), the median milliseconds of the
    dense and of the fastest CSR product (NaN where nothing was timed), the ``layout`` chosen (``"dense"`` or
    ``"csr"``), for CSR ``kernel`` (``"native"`` or ``"torch"``, the product) and ``tile`` (torch's product
    only: the rows per product, None for all at once), and ``reason``, why a layer was not timed (forced, too
    dense, or a convolution the native kernel cannot take or has no input to time on)."""

    name: str
    shape: tuple[int, int]
    density: float
    rows: int
    dense_ms: float
    sparse_ms: float
    layout: str
    tile: int | None = None
    kernel: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _input_shapes(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...],
                  names: list[str]) -> dict[str, tuple]:  # fmt: skip
    """The (input shape, output shape) of each named module in one forward pass of ``example_input`` (a
    tuple: the forward's positional arguments); a module called more than once keeps its first call's."""
    modules = dict(model.named_modules())
    shapes: dict[str, tuple] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor) -> None:
            inputs = (*args, *kwargs.values())  # a layer may be called with input=x
            shapes.setdefault(name, (tuple(inputs[0].shape), tuple(output.shape)))  # None: the output is kept

        return hook

    hooks = [modules[name].register_forward_hook(record(name), with_kwargs=True) for name in names]
    try:
        with torch.inference_mode():
            model(*example_input) if isinstance(example_input, (tuple, list)) else model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


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
    example_input: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
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
    ``batch_size`` replaced by a ``CsrLinear``, every ``nn.Conv2d`` that does by a ``CsrConv2d``, and one
    ``LayerDecision`` per Linear and Conv2d, in module order. Each ``nn.MultiheadAttention`` is first unpacked
    into Linears named ``<name>.q_proj``, ``.k_proj``, ``.v_proj`` and ``.out_proj`` (``unpack_attention``),
    decided like the others. Convolutions need the native kernel and, to be timed, ``example_input``; one the
    kernel cannot take (groups, a padding mode other than zeros) stays dense, its decision says why.

    Each Linear is timed alone, dense against CSR, on a random input of its own width (``warmup`` calls, then
    the median of ``repeats``), with ``threads`` torch threads if given (restored afterwards): the thread count
    the model will run with changes which product is faster. The input's rows are ``batch_size``, or, with
    ``example_input`` (one batch as the model takes it; a tuple: its forward's positional arguments), the rows
    each Linear really sees in its first call, e.g. batch x tokens in a transformer. CSR is chosen where it is
    at least ``min_gain`` (a share) faster, so timing noise does not flip layers that are even. Layers denser
    than ``max_density`` stay dense untimed (CSR's indices then cost more than the zeros it skips).
    ``kernels``: the CSR products to consider (``"native"``, ``"torch"``; the native one only where it can be
    built); every one is timed, and torch's tiled variants where the native kernel is not a candidate.
    ``force``: ``"dense"`` or ``"csr"`` for every layer, or a mapping from module names to layouts, decided
    without timing (CSR then takes the first available of ``kernels``; a name that is not a Linear or Conv2d
    of the model is an error). A layer reachable under several names is decided once, under its first, and
    replaced under each. The model is put in eval mode; outputs equal the masked dense model's up to the
    summation order of floating point.
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
    aliases: dict[int, list[str]] = {}  # a module reachable under several names is replaced under each
    for name, module in converted.named_modules(remove_duplicate=False):
        if type(module) in (nn.Linear, nn.Conv2d):
            aliases.setdefault(id(module), []).append(name)
    layers = [(name, module) for name, module in converted.named_modules() if id(module) in aliases]
    if isinstance(force, Mapping):
        known = {alias for names in aliases.values() for alias in names}
        unknown = sorted(set(force) - known)
        if unknown:
            raise ValueError(f"force names {', '.join(map(repr, unknown))}, not a Linear or Conv2d of the model")
    shapes = _input_shapes(converted, example_input, [name for name, _ in layers]) if example_input is not None else {}
    previous_threads = torch.get_num_threads()
    timing = _Timing(torch.Generator().manual_seed(seed), warmup, repeats, min_gain)
    decisions: list[LayerDecision] = []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for name, layer in layers:
            weight = effective_weight(layer)
            density = float(torch.count_nonzero(weight)) / max(1, weight.numel())
            layout = _forced_layout(force, name)
            too_dense = density > max_density
            reason = "forced" if layout is not None else f"density above {max_density}" if too_dense else None
            layout = DENSE if layout is None and reason is not None else layout
            if isinstance(layer, nn.Linear):
                decision, replacement = _decide_linear(name, layer, weight, density, layout, reason, available,
                                                       shapes.get(name), batch_size, timing)  # fmt: skip
            else:
                decision, replacement = _decide_conv(name, layer, weight, density, layout, reason, NATIVE in available,
                                                     shapes.get(name), example_input is not None, timing)  # fmt: skip
            if replacement is not None:
                for alias in aliases[id(layer)]:
                    _set_submodule(converted, alias, replacement)
            elif isinstance(layer, nn.Linear):
                layer.__class__ = RowMajorLinear  # the converted copy's own module: same state, row-major input
            decisions.append(decision)
    finally:
        torch.set_num_threads(previous_threads)
    return converted, decisions


@dataclass(frozen=True)
class _Timing:
    """How layers are timed: the random inputs' generator, the calls before timing, the timed calls, and the
    share by which CSR must be faster to be chosen."""

    generator: torch.Generator
    warmup: int
    repeats: int
    min_gain: float

    def pair(self, dense: Callable[[], Any], sparse: Callable[[], Any]) -> tuple[float, float]:
        with torch.inference_mode():
            return paired_median_ms(dense, sparse, self.warmup, self.repeats)

    def faster(self, dense_ms: float, sparse_ms: float) -> bool:
        return sparse_ms < dense_ms * (1.0 - self.min_gain)


def _decide_linear(name: str, linear: nn.Linear, weight: torch.Tensor, density: float, layout: str | None,
                   reason: str | None, available: list[str], shapes: tuple | None, batch_size: int,
                   timing: _Timing) -> tuple[LayerDecision, nn.Module | None]:  # fmt: skip
    """A Linear's decision (timed unless ``layout`` is already set) and its CSR replacement, if any."""
    n_rows = math.prod(shapes[0][:-1]) if shapes is not None else batch_size
    kernels_here = [k for k in available if k != NATIVE or native_takes(weight)] or [TORCH]
    kernel, tile = kernels_here[0], None
    dense_ms = sparse_ms = math.nan
    if layout is None:
        x = torch.randn(n_rows, linear.in_features, generator=timing.generator, dtype=weight.dtype).to(weight.device)
        candidates = [(candidate, None) for candidate in kernels_here]
        if NATIVE not in kernels_here:
            candidates += [(TORCH, tile) for tile in ROW_TILES if n_rows >= 2 * tile]
        timed = {}  # (kernel, tile): (the layer, dense ms, CSR ms), each pair timed in alternation
        for candidate in candidates:
            layer = CsrLinear(weight, linear.bias, candidate[1], candidate[0])
            timed[candidate] = (layer, *timing.pair(lambda: linear(x), lambda: layer(x)))
        kernel, tile = min(timed, key=lambda c: timed[c][2] / timed[c][1])
        fastest, dense_ms, sparse_ms = timed[kernel, tile]
        layout = CSR if timing.faster(dense_ms, sparse_ms) else DENSE
        replacement = fastest if layout == CSR else None
    else:
        replacement = CsrLinear(weight, linear.bias, tile, kernel) if layout == CSR else None
    if layout == DENSE:
        kernel = tile = None
    decision = LayerDecision(name, (linear.out_features, linear.in_features), density, n_rows, dense_ms, sparse_ms,
                             layout, tile, kernel, reason)  # fmt: skip
    return decision, replacement


def _decide_conv(name: str, conv: nn.Conv2d, weight: torch.Tensor, density: float, layout: str | None,
                 reason: str | None, native: bool, shapes: tuple | None, had_input: bool,
                 timing: _Timing) -> tuple[LayerDecision, nn.Module | None]:  # fmt: skip
    """A convolution's decision and its ``CsrConv2d``, if any: only the native kernel computes sparse
    convolutions, and timing one needs its input's shape (``example_input``)."""
    geometry = conv_geometry(conv)
    cannot = (geometry if isinstance(geometry, str) else "the native kernel is unavailable" if not native
              else "float32 on the CPU only" if not native_takes(weight) else None)  # fmt: skip
    if layout == CSR and cannot is not None:
        layout, reason = DENSE, f"forced to csr, but {cannot}"
    elif layout is None and cannot is not None:
        layout, reason = DENSE, cannot
    elif layout is None and shapes is None:
        layout, reason = DENSE, "not reached by example_input" if had_input else "no example_input to time it on"
    rows = 0 if shapes is None else math.prod(shapes[1]) // conv.out_channels  # output pixels, batched or not
    dense_ms = sparse_ms = math.nan
    candidate = CsrConv2d(conv) if layout in (None, CSR) else None
    if layout is None:
        x = torch.randn(shapes[0], generator=timing.generator, dtype=weight.dtype).to(weight.device)
        dense_ms, sparse_ms = timing.pair(lambda: conv(x), lambda: candidate(x))
        layout = CSR if timing.faster(dense_ms, sparse_ms) else DENSE
    decision = LayerDecision(name, (conv.out_channels, weight[0].numel()), density, rows, dense_ms, sparse_ms,
                             layout, None, NATIVE if layout == CSR else None, reason)  # fmt: skip
    return decision, candidate if layout == CSR else None


def load_for_inference(
    path: str | os.PathLike,
    batch_size: int,
    threads: int | None = None,
    **options: Any,
) -> tuple[nn.Module, dict[str, Any], list[LayerDecision]]:
    """An export (``scripts/export.py``, ``rigl_repro.export``) loaded on the CPU as a model for inference at
    ``batch_size``: ``sparsify_for_inference`` decides each Linear's and convolution's layout by timing
    (``options`` are its keywords: ``example_input``, ``force``, ``min_gain``, ...). Without
    ``example_input``, the layers are timed on a random batch of the run's image shape (its config's
    ``dataset.channels`` and ``dataset.image_size``). Returns the model, the export's metadata with the
    decisions added under ``inference_layers``, and the decisions."""
    from rigl_repro.export import load_export  # imported here: it loads the run machinery, CsrLinear needs none

    if "inplace" in options:
        raise TypeError("load_for_inference converts the model it loads: it takes no inplace")

    model, metadata = load_export(path, "cpu")
    if options.get("example_input") is None:
        dataset = metadata.get("config", {}).get("dataset", {})
        if "channels" in dataset and "image_size" in dataset:
            size = int(dataset["image_size"])
            generator = torch.Generator().manual_seed(options.get("seed", 0))
            options["example_input"] = torch.randn(batch_size, int(dataset["channels"]), size, size,
                                                   generator=generator)  # fmt: skip
    converted, decisions = sparsify_for_inference(model, batch_size, threads, inplace=True, **options)
    return converted, {**metadata, "inference_layers": [decision.as_dict() for decision in decisions]}, decisions


def max_relative_error(reference: torch.Tensor, output: torch.Tensor) -> float:
    """max |output - reference| / max |reference| (0 when both are all zeros)."""
    scale = reference.abs().max().item()
    diff = (output - reference).abs().max().item()
    return diff / scale if scale > 0 else diff


__all__ = [
    "CSR", "DENSE", "LAYOUTS", "LayerDecision", "load_for_inference", "max_relative_error", "median_ms",
    "paired_median_ms", "sparsify_for_inference", "unpack_attention",
]  # fmt: skip
