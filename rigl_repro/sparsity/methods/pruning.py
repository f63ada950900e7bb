"""Gradual magnitude pruning (Zhu & Gupta 2018): dense to sparse along a cubic schedule.

Training starts dense. Every ``delta_t`` steps between the start and end of the pruning window, each layer
keeps its largest-magnitude weights so that its sparsity follows
``s_l(t) = (1 - d_l) * (1 - (1 - (t - t0) / (t1 - t0)) ** 3)``, where ``d_l`` is the layer's final density
under the layer-wise distribution. Pruned weights never come back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rigl_repro.errors import ConfigError, require_in_range
from rigl_repro.sparsity.methods.base import SparseMethod
from rigl_repro.sparsity.schedules import cubic_sparsity, is_pruning_step, pruning_window


@dataclass(kw_only=True, eq=False)
class GradualPruning(SparseMethod):
    """Zhu & Gupta pruning with the masking interval ``delta_t`` as its pruning interval (report, 4.4)."""

    name = "pruning"
    start_fraction: float = 0.0
    end_fraction: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        require_in_range("masking.start_fraction", self.start_fraction, 0.0, 1.0, high_open=True)
        require_in_range("masking.end_fraction", self.end_fraction, 0.0, 1.0, low_open=True)
        if self.end_fraction <= self.start_fraction:
            raise ConfigError(
                f"masking.end_fraction={self.end_fraction} must be greater than "
                f"masking.start_fraction={self.start_fraction}"
            )

    def setup(self, model, layers, optimizer, total_steps, generator) -> None:  # type: ignore[override]
        super().setup(model, layers, optimizer, total_steps, generator)
        self.start, self.end = pruning_window(total_steps, self.start_fraction, self.end_fraction, self.delta_t)
        self.final_counts = super().initial_counts()

    def initial_counts(self) -> list[int]:
        return [layer.size for layer in self.layers]

    def is_update_step(self, step: int) -> bool:
        return self.end > self.start and is_pruning_step(step, self.start, self.end, self.delta_t)

    def target_counts(self, step: int) -> list[int]:
        """Active weights per layer that the cubic schedule asks for at ``step``."""
        progress = cubic_sparsity(step, 1.0, self.start, self.end)
        targets = []
        for layer, final in zip(self.layers, self.final_counts):
            target = math.floor(layer.size - progress * (layer.size - final) + 0.5)
            targets.append(max(final, min(layer.size, target)))
        return targets

    def drop_counts(self, step: int) -> list[int]:
        return [max(0, layer.n_active - target) for layer, target in zip(self.layers, self.target_counts(step))]

    def grow_counts(self, step: int, dropped: Sequence[int]) -> list[int]:
        return [0] * len(self.layers)
