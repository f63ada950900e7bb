"""Gradual magnitude pruning (Zhu & Gupta 2018): dense to sparse along a cubic schedule.

Training starts dense. Every ``delta_t`` steps between the start and end of the pruning window the
sparsity follows ``s(t) = s_f * (1 - (1 - (t - t0) / (t1 - t0)) ** 3)`` and pruned weights never come back.

- ``scope: global`` (the report's code): the budgeted layers together keep their largest-magnitude weights,
  one threshold for all, so the final per-layer densities are learned. The layers the distribution leaves
  out of the budget (Uniform's first layer) stay dense.
- ``scope: layerwise``: each layer follows the schedule towards its own final density under the layer-wise
  distribution, ``s_l(t) = (1 - d_l) * s(t) / s_f``.

The report's code prunes from step 700 to step 65,918 (75%) of 87,891, every 100 steps. The defaults are
fractions of that: 0.008 (step 703 of 87,891) to 0.75, the end moved back onto the delta_t grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rigl_repro.errors import ConfigError, require_choice, require_in_range
from rigl_repro.sparsity.distributions import budgeted_layers
from rigl_repro.sparsity.masks import restricted_to
from rigl_repro.sparsity.methods.base import SparseMethod
from rigl_repro.sparsity.schedules import cubic_sparsity, end_step, is_pruning_step, pruning_window


@dataclass(kw_only=True, eq=False)
class GradualPruning(SparseMethod):
    """Zhu & Gupta pruning with the masking interval ``delta_t`` as its pruning interval (report, 4.4)."""

    name = "pruning"
    start_fraction: float = 0.008
    end_fraction: float = 0.75
    scope: str = "global"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.scope", self.scope, ("global", "layerwise"))
        require_in_range("masking.start_fraction", self.start_fraction, 0.0, 1.0, high_open=True)
        require_in_range("masking.end_fraction", self.end_fraction, 0.0, 1.0, low_open=True)
        if self.end_fraction <= self.start_fraction:
            raise ConfigError(
                f"masking.end_fraction={self.end_fraction} must be greater than "
                f"masking.start_fraction={self.start_fraction}"
            )

    def setup(self, model, layers, optimizer, total_steps, generator) -> None:  # type: ignore[override]
        super().setup(model, layers, optimizer, total_steps, generator)
        self.final_counts = super().initial_counts()

    def plan(self, total_steps: int) -> None:
        super().plan(total_steps)
        self.start, self.end = pruning_window(total_steps, self.start_fraction, self.end_fraction, self.delta_t)
        if self.end <= self.start:
            raise ConfigError(
                f"masking.delta_t={self.delta_t} is longer than the pruning window (steps "
                f"{end_step(total_steps, self.start_fraction)} to {end_step(total_steps, self.end_fraction)} of "
                f"{total_steps}): no pruning step would happen; lower masking.delta_t or train longer"
            )

    def keeps_layer_densities(self) -> bool:
        return False

    def initial_counts(self) -> list[int]:
        return [layer.size for layer in self.layers]

    def is_update_step(self, step: int) -> bool:
        return is_pruning_step(step, self.start, self.end, self.delta_t)

    def target_counts(self, step: int) -> list[int]:
        """Active weights per layer that the cubic schedule asks for at ``step``."""
        return self.global_targets(step) if self.scope == "global" else self.layerwise_targets(step)

    def layerwise_targets(self, step: int) -> list[int]:
        progress = cubic_sparsity(step, 1.0, self.start, self.end)
        targets = []
        for layer, final in zip(self.layers, self.final_counts):
            target = math.floor(layer.size - progress * (layer.size - final) + 0.5)
            targets.append(max(final, min(layer.size, target)))
        return targets

    def global_targets(self, step: int) -> list[int]:
        """Per-layer counts of the globally largest magnitudes among the budgeted layers, at least one
        weight per layer (a layer pruned to nothing would cut the network).

        One stable sort over all budgeted weights (ties to the earlier layer and lower index, the same
        order the per-layer selection uses), one host read per pruning step.
        """
        budget = set(budgeted_layers(self.distribution, {layer.name: () for layer in self.layers}))
        pruned = [layer for layer in self.layers if layer.name in budget]
        final_total = sum(count for layer, count in zip(self.layers, self.final_counts) if layer.name in budget)
        full_total = sum(layer.size for layer in pruned)
        progress = cubic_sparsity(step, 1.0, self.start, self.end)
        keep = math.floor(full_total - progress * (full_total - final_total) + 0.5)
        scores = torch.cat([restricted_to(layer.mask, self.drop_scores(layer)).reshape(-1) for layer in pruned])
        owner = torch.cat([torch.full((layer.size,), i, device=scores.device) for i, layer in enumerate(pruned)])
        chosen = torch.sort(scores, descending=True, stable=True).indices[:keep]
        kept = torch.bincount(owner[chosen], minlength=len(pruned)).tolist()
        per_layer = {layer.name: max(1, count) for layer, count in zip(pruned, kept)}
        return [per_layer.get(layer.name, layer.n_active) for layer in self.layers]

    def drop_counts(self, step: int) -> list[int]:
        return [max(0, layer.n_active - target) for layer, target in zip(self.layers, self.target_counts(step))]

    def grow_counts(self, step: int, dropped: Sequence[int]) -> list[int]:
        return [0] * len(self.layers)
