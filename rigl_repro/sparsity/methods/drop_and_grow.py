"""Dynamic sparse training's shared part: drop the smallest magnitudes on a cosine-decayed schedule, grow as
many (RigL, SET) or a redistributed share of them (SNFS, RigL-SG/SM). Each method that drops and grows is a
subclass defining ``grow_scores`` (``rigl.py``, ``sparse_evolutionary.py``, ``snfs.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rigl_repro.errors import ConfigError, require_bool, require_choice, require_in_range
from rigl_repro.sparsity.methods.base import (
    LayerwiseDistribution,
    UpdateSchedule,
    load_model_weights,
    saved_mask,
)
from rigl_repro.sparsity.redistribution import REDISTRIBUTION_RULES, allocate
from rigl_repro.sparsity.schedules import cosine_drop_fraction, drop_count, end_step, is_periodic_update, schedule_step
from rigl_repro.sparsity.structure import UNSTRUCTURED

REDISTRIBUTIONS = ("none", "grad", "momentum")
REGROWN = ("zero", "keep")
# Dettmers' adjust_prune_rate: a layer denser than this whose statistic share is above average drops less.
DENSE_LAYER_SPARSITY = 0.2


@dataclass(kw_only=True, eq=False)
class DropAndGrow(UpdateSchedule, LayerwiseDistribution):
    """Dynamic sparse training: every ``delta_t`` steps until T_end (``t_end_fraction`` of training), each
    layer drops ``f(t) * n_active`` smallest-magnitude weights (rounded by ``drop_rounding``), with f(t) the
    drop fraction ``alpha`` cosine-decayed as in equation 1, and grows as many (RigL, SET) or a share of the
    total redistributed by ``redistribution`` (SNFS, RigL-SG/SM).

    As the report's code (``Masking.truncate_weights``), after Dettmers & Zettlemoyer's:

    - ``adjust_prune_rate``: a layer more than 80% dense whose statistic share (the redistribution
      statistic, or its active count without redistribution) is above 1/L drops at most its sparsity
      (``Masking.adjust_prune_rate``). Evci et al.'s code has no such rule.
    - ``regrown: zero``: a connection dropped and grown back in the same update restarts at weight 0 and
      keeps its momentum (``abs_grad_growth`` and ``random_growth`` zero every grown weight); ``keep``
      leaves it untouched (Evci et al.; the report's SNFS).
    - ``redistribution_rule``: how regrown weights are shared (``rigl_repro.sparsity.redistribution``).

    Subclasses define ``grow_scores``.
    """

    alpha: float = 0.3
    t_end_fraction: float = 0.75
    redistribution: str = "none"
    regrown: str = "zero"
    adjust_prune_rate: bool = True
    redistribution_rule: str = "capped"
    initial_mask: str = ""  # a finished run's checkpoint whose final masks start this run (Table 5's re-init rows)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_in_range("masking.alpha", self.alpha, 0.0, 1.0)
        require_in_range("masking.t_end_fraction", self.t_end_fraction, 0.0, 1.0, low_open=True)
        require_choice("masking.redistribution", self.redistribution, REDISTRIBUTIONS)
        require_choice("masking.regrown", self.regrown, REGROWN)
        require_choice("masking.redistribution_rule", self.redistribution_rule, REDISTRIBUTION_RULES)
        require_bool("masking.adjust_prune_rate", self.adjust_prune_rate)
        if self.structure != UNSTRUCTURED and self.redistribution != "none":
            raise ConfigError(
                f"masking.redistribution={self.redistribution} moves weights between layers, which "
                f"masking.structure={self.structure} does not follow yet; use masking.redistribution=none "
                "(RigL, SET) or masking.structure=unstructured"
            )

    def plan(self, total_steps: float) -> None:
        super().plan(total_steps)
        self.t_end = end_step(total_steps, self.t_end_fraction)

    def keeps_layer_densities(self) -> bool:
        return self.redistribution == "none"

    def zeroes_regrown(self) -> bool:
        return self.regrown == "zero"

    def initial_masks(self, counts: Sequence[int]) -> list[torch.Tensor]:
        """Random masks, or the final masks of the run saved in ``initial_mask``: the report code's
        re-initialisation rows start RigL from the RigL-SM run's mask itself (``lottery-ticket`` init)."""
        if not self.initial_mask:
            return super().initial_masks(counts)
        state = load_model_weights(self.initial_mask, "masking.initial_mask")
        masks = []
        for layer, count in zip(self.layers, counts):
            saved = saved_mask(state, layer)
            if saved is None:
                raise ConfigError(f"masking.initial_mask={self.initial_mask!r} holds no mask of {layer.name}")
            if int(saved.sum()) != count:
                raise ConfigError(
                    f"masking.initial_mask={self.initial_mask!r} has {int(saved.sum())} active weights in "
                    f"{layer.name}, the distribution asks for {count}; use masking.distribution=custom with "
                    "masking.custom_densities from the same run's summary.json"
                )
            masks.append(saved.to(layer.weight.device))
        return masks

    def is_update_step(self, step: int) -> bool:
        return is_periodic_update(step, self.delta_t, self.t_end, self.update_timing)

    def drop_counts(self, step: int) -> list[int]:
        fraction = cosine_drop_fraction(schedule_step(step, self.update_timing), self.alpha, self.t_end)
        fractions = self.layer_drop_fractions(fraction)
        return [
            drop_count(rate, layer.n_active, self.drop_rounding) if updated else 0
            for layer, rate, updated in zip(self.layers, fractions, self.updated)
        ]

    def layer_drop_fractions(self, fraction: float) -> list[float]:
        """The drop fraction of every layer, after ``adjust_prune_rate``."""
        if not self.adjust_prune_rate or fraction == 0.0:
            return [fraction] * len(self.layers)
        statistics = self.layer_statistics()
        total = sum(s for s, updated in zip(statistics, self.updated) if updated)
        average_share = 1.0 / max(sum(self.updated), 1)
        fractions = []
        for layer, statistic, updated in zip(self.layers, statistics, self.updated):
            sparsity = (layer.size - layer.n_active) / layer.size  # zeros / numel, as the report's code
            if updated and total > 0 and sparsity < DENSE_LAYER_SPARSITY and statistic / total > average_share:
                fractions.append(min(sparsity, fraction))
            else:
                fractions.append(fraction)
        return fractions

    def grow_counts(self, step: int, dropped: Sequence[int]) -> list[int]:
        if self.redistribution == "none":
            return list(dropped)
        capacities = [
            layer.size - layer.n_active + n if updated else 0
            for layer, n, updated in zip(self.layers, dropped, self.updated)
        ]
        scores = [s if updated else 0.0 for s, updated in zip(self.layer_statistics(), self.updated)]
        return allocate(self.redistribution_rule, sum(dropped), scores, capacities)

    def layer_statistics(self) -> list[float]:
        """Each layer's redistribution statistic before the update (``Masking.gather_statistics``): the
        mean magnitude over its active weights of the dense gradient or the momentum (section 6.2), or,
        without redistribution, its active count.

        One host read per update, never per step.
        """
        if self.redistribution == "none":
            return [float(layer.n_active) for layer in self.layers]
        means = []
        for layer in self.layers:
            source = layer.weight.grad if self.redistribution == "grad" else self.momentum(layer)
            if source is None:
                source = torch.zeros_like(layer.weight)
            means.append((source.abs() * layer.mask).sum() / max(layer.n_active, 1))
        return torch.stack(means).tolist()
