"""SNFS, sparse momentum (Dettmers & Zettlemoyer 2020): grow by momentum, redistribute by mean momentum.

SNFS reads the momentum of *dense* gradients. ``growth_momentum`` says where it comes from:

- ``optimizer`` (the report's and Dettmers' code, ``dense_gradients: True``): the optimizer's own momentum
  buffer, kept dense. Gradients are not masked; the optimizer steps every weight and the masked ones are
  zeroed again after the step (``Masking.step`` then ``apply_mask``). A weight grown at an update starts at
  zero with the momentum that selected it, and the buffer holds the weight-decay term of active weights.
  Update steps take no optimizer step, so they add no gradient to the buffer.
- ``separate``: a momentum of dense gradients kept beside the optimizer, ``m <- momentum_coefficient * m + g``
  every step; the optimizer's state stays sparse and grown weights start with zero momentum, as in Evci
  et al.'s SNFS (whose exponential moving average, ``(1 - beta) g`` per step, ranks weights the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rigl_repro.errors import require_choice, require_in_range
from rigl_repro.sparsity.masks import SparseLayer
from rigl_repro.sparsity.methods.drop_and_grow import DropAndGrow

GROWTH_MOMENTA = ("optimizer", "separate")


@dataclass(kw_only=True, eq=False)
class SNFS(DropAndGrow):
    """Momentum growth with momentum-based redistribution across layers."""

    name = "snfs"
    dense_gradients = "every_step"
    redistribution: str = "momentum"
    regrown: str = "keep"  # momentum_growth in the report's code leaves grown weights as they are
    growth_momentum: str = "optimizer"
    momentum_coefficient: float = 0.9  # of the separate momentum

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.growth_momentum", self.growth_momentum, GROWTH_MOMENTA)
        require_in_range("masking.momentum_coefficient", self.momentum_coefficient, 0.0, 1.0, high_open=True)

    def setup(self, model, layers, optimizer, total_steps, generator) -> None:  # type: ignore[override]
        super().setup(model, layers, optimizer, total_steps, generator)
        separate = self.growth_momentum == "separate"
        self.dense_momentum = [torch.zeros_like(layer.weight) for layer in layers] if separate else []

    def dense_optimizer_state(self) -> bool:
        return self.growth_momentum == "optimizer"

    def observe_gradients(self, grads: Sequence[torch.Tensor | None]) -> None:
        pairs = [(m, g) for m, g in zip(self.dense_momentum, grads) if g is not None]
        if pairs:
            buffers, present = zip(*pairs)
            torch._foreach_mul_(list(buffers), self.momentum_coefficient)
            torch._foreach_add_(list(buffers), list(present))

    def momentum(self, layer: SparseLayer) -> torch.Tensor:
        if self.growth_momentum == "optimizer":
            return super().momentum(layer)
        return self.dense_momentum[self.layers.index(layer)]

    def grow_scores(self, layer: SparseLayer) -> torch.Tensor:
        return self.momentum(layer).abs()

    def state_dict(self) -> dict[str, Any]:
        return {"dense_momentum": [m.clone() for m in self.dense_momentum]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for buffer, saved in zip(self.dense_momentum, state["dense_momentum"], strict=True):
            buffer.copy_(saved)
