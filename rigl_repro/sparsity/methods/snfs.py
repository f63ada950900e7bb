"""SNFS, sparse momentum (Dettmers & Zettlemoyer 2020): grow by momentum, redistribute by mean momentum.

SNFS needs the dense gradient at every step: the method keeps its own momentum of dense gradients,
``m <- beta * m + g`` (the SGD momentum recursion), updated before the gradients are masked. The optimizer's
own momentum stays sparse like every other method's, so masked weights never move; growth and
redistribution read the dense momentum kept here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rigl_repro.errors import require_in_range
from rigl_repro.sparsity.masks import SparseLayer
from rigl_repro.sparsity.methods.base import DropAndGrow


@dataclass(kw_only=True, eq=False)
class SNFS(DropAndGrow):
    """Momentum growth with momentum-based redistribution across layers."""

    name = "snfs"
    dense_gradients = "every_step"
    redistribution: str = "momentum"
    momentum_coefficient: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        require_in_range("masking.momentum_coefficient", self.momentum_coefficient, 0.0, 1.0, high_open=True)

    def setup(self, model, layers, optimizer, total_steps, generator) -> None:  # type: ignore[override]
        super().setup(model, layers, optimizer, total_steps, generator)
        self.dense_momentum = [torch.zeros_like(layer.weight) for layer in layers]

    def observe_gradients(self, grads: Sequence[torch.Tensor | None]) -> None:
        pairs = [(m, g) for m, g in zip(self.dense_momentum, grads) if g is not None]
        if pairs:
            buffers, present = zip(*pairs)
            torch._foreach_mul_(list(buffers), self.momentum_coefficient)
            torch._foreach_add_(list(buffers), list(present))

    def momentum(self, layer: SparseLayer) -> torch.Tensor:
        return self.dense_momentum[self.layers.index(layer)]

    def grow_scores(self, layer: SparseLayer) -> torch.Tensor:
        return self.momentum(layer).abs()

    def state_dict(self) -> dict[str, Any]:
        return {"dense_momentum": [m.clone() for m in self.dense_momentum]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for buffer, saved in zip(self.dense_momentum, state["dense_momentum"], strict=True):
            buffer.copy_(saved)
