"""Gradual magnitude pruning (Zhu & Gupta 2018): dense to sparse along a cubic schedule.

Training starts dense. Every ``delta_t`` steps between the start and end of the pruning window the
sparsity follows ``s(t) = s_f * (1 - (1 - (t - t0) / (t1 - t0)) ** 3)`` and pruned weights never come back.

- ``scope: global`` (the report's code): the budgeted layers together keep their largest-magnitude weights,
  one threshold for all, so the final per-layer densities are learned. The layers the distribution leaves
  out of the budget (Uniform's first layer) stay dense.
- ``scope: layerwise``: each layer follows the schedule towards its own final density under the layer-wise
  distribution, ``s_l(t) = (1 - d_l) * s(t) / s_f``.

Under ``masking.structure=fan_in`` every pruning step keeps the same number of inputs in every neuron of a
layer (its largest magnitudes); ``nm`` is refused, as it fixes the density from the first step.

The report's code (``conf/specific/cifar10_wrn_22_2_pruning.yaml``, ``MagnitudePruneDecay`` in
``sparselearning/funcs/decay.py``) prunes every 100 steps from step 700 to step 65,918 of its 87,890.6-step
schedule; the defaults are those fractions (0.00796 and 0.75 of the schedule length). Under
``update_timing: report_code`` each pruning step moves the budgeted layers to the schedule's sparsity of the
previous step, removing ``ceil`` (``drop_rounding``) of the weights that takes (``global_magnitude_prune``
rounds ``tokill`` up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rigl_repro.errors import ConfigError, require_choice, require_in_range
from rigl_repro.sparsity.masks import restricted_to
from rigl_repro.sparsity.methods.base import LayerwiseDistribution, UpdateSchedule
from rigl_repro.sparsity.schedules import cubic_sparsity, end_step, is_pruning_step, pruning_window, schedule_step
from rigl_repro.sparsity.structure import N_OF_M


@dataclass(kw_only=True, eq=False)
class GradualPruning(UpdateSchedule, LayerwiseDistribution):
    """Zhu & Gupta pruning with the masking interval ``delta_t`` as its pruning interval (report, 4.4)."""

    name = "pruning"
    start_fraction: float = 0.00796  # step 700 of 87,890.6, the report code's start_when
    end_fraction: float = 0.75
    scope: str = "global"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.scope", self.scope, ("global", "layerwise"))
        if self.structure == N_OF_M:
            raise ConfigError(
                "masking.structure=nm fixes every layer at density n/m from the first step, and gradual magnitude "
                "pruning starts dense; use masking.structure=fan_in or unstructured"
            )
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

    def plan(self, total_steps: float) -> None:
        super().plan(total_steps)
        self.start, self.end = pruning_window(
            total_steps, self.start_fraction, self.end_fraction, self.delta_t, self.update_timing
        )
        first_steps = range(self.start, min(self.end, self.start + self.delta_t + 1) + 1)
        if not any(self.is_update_step(s) and schedule_step(s, self.update_timing) > self.start for s in first_steps):
            raise ConfigError(
                f"masking.delta_t={self.delta_t} is longer than the pruning window (steps "
                f"{end_step(total_steps, self.start_fraction)} to {end_step(total_steps, self.end_fraction)} of "
                f"{total_steps:g}): no pruning step would happen; lower masking.delta_t or train longer"
            )

    def keeps_layer_densities(self) -> bool:
        return False

    def initial_counts(self) -> list[int]:
        return [layer.size for layer in self.layers]

    def is_update_step(self, step: int) -> bool:
        return is_pruning_step(step, self.start, self.end, self.delta_t, self.update_timing)

    def target_sparsity(self, step: int, final_sparsity: float) -> float:
        """The cubic schedule's sparsity for an update at ``step``, on its way to ``final_sparsity``."""
        return cubic_sparsity(schedule_step(step, self.update_timing), final_sparsity, self.start, self.end)

    def kept(self, full: int, active: int, final_sparsity: float, step: int) -> int:
        """Weights kept of ``active`` (of ``full``) by a pruning step at ``step``.

        As the report's code: the rate to prune is the schedule's sparsity less the current one, at least 0
        (``MagnitudePruneDecay`` in cumulative mode), and ``rate * full`` weights go, rounded by
        ``drop_rounding`` (``global_magnitude_prune`` rounds up).
        """
        rate = max(self.target_sparsity(step, final_sparsity) - (1.0 - active / full), 0.0)
        to_drop = rate * full
        return active - min(active, math.ceil(to_drop) if self.drop_rounding == "ceil" else math.floor(to_drop))

    def target_counts(self, step: int) -> list[int]:
        """Active weights per layer after the pruning step at ``step``."""
        return self.global_targets(step) if self.scope == "global" else self.layerwise_targets(step)

    def layerwise_targets(self, step: int) -> list[int]:
        targets = []
        for layer, final, updated in zip(self.layers, self.final_counts, self.updated):
            target = self.kept(layer.size, layer.n_active, 1.0 - final / layer.size, step) if updated else None
            targets.append(layer.n_active if target is None else max(final, target))
        return targets

    def global_targets(self, step: int) -> list[int]:
        """Per-layer counts of the globally largest magnitudes among the budgeted layers, towards
        ``density`` over them all, at least one weight per layer (a layer pruned to nothing would cut the
        network; under ``fan_in``, one input per neuron). Under ``fan_in`` the engine then rounds each layer's
        drop up to a whole input per neuron and keeps every neuron's largest magnitudes.

        One stable sort over all budgeted weights (ties to the earlier layer and lower index, the same
        order the per-layer selection uses), one host read per pruning step; none when nothing is pruned.
        """
        pruned = [layer for layer, updated in zip(self.layers, self.updated) if updated]
        full = sum(layer.size for layer in pruned)
        active = sum(layer.n_active for layer in pruned)
        keep = self.kept(full, active, 1.0 - self.density, step)
        if keep == active:
            return [layer.n_active for layer in self.layers]
        scores = torch.cat([restricted_to(layer.mask, self.drop_scores(layer)).reshape(-1) for layer in pruned])
        chosen = torch.sort(scores, descending=True, stable=True).indices[:keep]
        ends = torch.tensor([layer.size for layer in pruned], device=chosen.device).cumsum(0)
        kept = torch.bincount(torch.bucketize(chosen, ends, right=True), minlength=len(pruned)).tolist()
        fewest = [self.mask_structure.count(tuple(layer.weight.shape), 0.0) for layer in pruned]
        per_layer = {layer.name: max(least, count) for layer, least, count in zip(pruned, fewest, kept)}
        return [per_layer.get(layer.name, layer.n_active) for layer in self.layers]

    def drop_counts(self, step: int) -> list[int]:
        return [max(0, layer.n_active - target) for layer, target in zip(self.layers, self.target_counts(step))]

    def grow_counts(self, step: int, dropped: Sequence[int]) -> list[int]:
        return [0] * len(self.layers)
