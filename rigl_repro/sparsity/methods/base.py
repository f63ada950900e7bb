"""The interface every sparse-training method implements: what to drop, what to grow, and when.

A method is a dataclass whose fields are its options, exactly the keys of its ``conf/masking/*.yaml``.
Subclasses register themselves by setting ``name``; the engine (``rigl_repro.sparsity.engine``) does the
mask bookkeeping, so a method only answers questions:

- ``initial_counts`` / ``initial_masks``: the starting topology (default: the layer-wise distribution,
  exact random masks);
- ``is_update_step``: whether the topology changes at a step (default: never);
- ``drop_counts`` / ``grow_counts``: how many weights each layer loses and gains;
- ``drop_scores`` / ``grow_scores``: which ones (the largest scores are kept / grown).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rigl_repro.errors import ConfigError, require_bool, require_choice, require_in_range, require_int
from rigl_repro.sparsity.distributions import DISTRIBUTIONS, budgeted_layers, layer_densities, nonzero_counts
from rigl_repro.sparsity.masks import MASK_BUFFER, SparseLayer, random_mask
from rigl_repro.sparsity.redistribution import REDISTRIBUTION_RULES, allocate
from rigl_repro.sparsity.schedules import (
    DROP_ROUNDINGS,
    UPDATE_TIMINGS,
    cosine_drop_fraction,
    drop_count,
    end_step,
    is_periodic_update,
    schedule_step,
)

REDISTRIBUTIONS = ("none", "grad", "momentum")
REGROWN = ("zero", "keep")
# Dettmers' adjust_prune_rate: a layer denser than this whose statistic share is above average drops less.
DENSE_LAYER_SPARSITY = 0.2


def load_model_weights(path: str, option: str) -> dict[str, torch.Tensor]:
    """A model state dict from ``path`` (a bare state dict, or a checkpoint with a ``"model"`` entry)."""
    if not path:
        raise ConfigError(f"{option} is not set; give the path of a dense run's weights")
    if not Path(path).is_file():
        raise ConfigError(f"{option}={path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or unsafe file is the same problem for the user
        raise ConfigError(f"{option}={path!r} is not a readable weights file ({error.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError(f"{option}={path!r} does not hold a state dict")
    return state


def saved_mask(state: Mapping[str, torch.Tensor], layer: SparseLayer) -> torch.Tensor | None:
    """``layer``'s mask in a saved model state dict, if it holds one of the right shape."""
    saved = state.get(layer.name.removesuffix("weight") + MASK_BUFFER)
    if isinstance(saved, torch.Tensor) and saved.dtype == torch.bool and saved.shape == layer.weight.shape:
        return saved
    return None


@dataclass(kw_only=True, eq=False)
class SparseMethod:
    """A sparse-training method with the options every method shares.

    ``density`` is the target fraction of non-zero weights over the budgeted layers, split across layers by
    ``distribution`` (``uniform`` is the report's "Random"). ``alpha``, ``delta_t`` and ``t_end_fraction``
    are RigL's drop fraction, update interval and the fraction of training after which masks freeze.
    ``update_timing`` and ``drop_rounding`` choose between the report's code and Evci et al.'s where they
    differ by a step or a weight (``rigl_repro.sparsity.schedules``; docs/fidelity.md).
    """

    name: ClassVar[str] = ""
    masked: ClassVar[bool] = True  # False: no masks at all (dense, small-dense)
    # When the method needs the dense gradient (a dense weight-gradient pass, f_D, for FLOP accounting):
    # "never", "update_steps" (RigL) or "every_step" (SNFS).
    dense_gradients: ClassVar[str] = "never"

    density: float = 0.1
    distribution: str = "uniform"
    erk_power_scale: float = 1.0
    custom_densities: dict[str, float] | str | None = None  # a map, or a finished run's summary.json
    alpha: float = 0.3
    delta_t: int = 100
    t_end_fraction: float = 0.75
    redistribution: str = "none"
    update_timing: str = "report_code"
    drop_rounding: str = "ceil"

    def __post_init__(self) -> None:
        require_in_range("masking.density", self.density, 0.0, 1.0, low_open=True)
        require_choice("masking.distribution", self.distribution, DISTRIBUTIONS)
        require_in_range("masking.erk_power_scale", self.erk_power_scale, 0.0, math.inf, low_open=True)
        require_in_range("masking.alpha", self.alpha, 0.0, 1.0)
        require_in_range("masking.t_end_fraction", self.t_end_fraction, 0.0, 1.0, low_open=True)
        require_choice("masking.redistribution", self.redistribution, REDISTRIBUTIONS)
        require_int("masking.delta_t", self.delta_t, 1)
        require_choice("masking.update_timing", self.update_timing, UPDATE_TIMINGS)
        require_choice("masking.drop_rounding", self.drop_rounding, DROP_ROUNDINGS)

    # ---------------------------------------------------------------- wiring (called once by the engine)
    def setup(
        self,
        model: nn.Module,
        layers: list[SparseLayer],
        optimizer: torch.optim.Optimizer,
        total_steps: float,
        generator: torch.Generator,
    ) -> None:
        """Receive the objects the method reads from; subclasses allocate their state here."""
        self.model, self.layers, self.optimizer, self.generator = model, layers, optimizer, generator
        budget = set(self.budget([layer.name for layer in layers]))
        # Layers outside the density budget (Uniform's dense first layer) are never changed: the report's
        # code does not even mask them (``random_init`` in sparselearning/funcs/init_scheme.py).
        self.updated = [layer.name in budget for layer in layers]
        self.plan(total_steps)

    def budget(self, names: Sequence[str]) -> list[str]:
        """The layers, of ``names``, whose weights count towards the density target and that updates change.

        Uniform leaves out the first layer. Densities read from a run's ``summary.json`` keep that run's
        budget (its ``budgeted_layers``): a run started from a Uniform run leaves the first layer alone too.
        """
        if self.distribution == "custom" and isinstance(self.custom_densities, str):
            saved = self.source_summary().get("budgeted_layers")
            if isinstance(saved, list):
                return [name for name in names if name in set(saved)]
        return budgeted_layers(self.distribution, {name: () for name in names})

    def plan(self, total_steps: float) -> None:
        """Fix the step schedule for a run whose schedules span ``total_steps`` (the schedule length of
        ``rigl_repro.sparsity.schedules.schedule_length``; needs no model: FLOP planning uses it)."""
        self.total_steps = total_steps
        self.t_end = end_step(total_steps, self.t_end_fraction)

    def zeroes_regrown(self) -> bool:
        """Whether a connection dropped and grown back in the same update restarts at weight zero."""
        return False

    def dense_optimizer_state(self) -> bool:
        """Whether the optimizer's state stays dense (masked weights are zeroed after its step, not their
        gradients before it): the report's SNFS, whose growth reads the optimizer's dense momentum."""
        return False

    def keeps_layer_densities(self) -> bool:
        """Whether every layer's density stays at its starting value for the whole run."""
        return self.redistribution == "none"

    # ---------------------------------------------------------------- starting topology
    def target_densities(self) -> dict[str, float]:
        """Per-layer densities of the layer-wise distribution at ``density`` for the bound model."""
        return self.distribution_densities({layer.name: tuple(layer.weight.shape) for layer in self.layers})

    def distribution_densities(self, shapes: Mapping[str, Sequence[int]]) -> dict[str, float]:
        """Per-layer densities of the layer-wise distribution at ``density`` for weights of ``shapes``."""
        return layer_densities(
            self.distribution,
            shapes,
            self.density,
            erk_power_scale=self.erk_power_scale,
            custom_densities=self.custom_density_map(),
        )

    def custom_density_map(self) -> Mapping[str, float] | None:
        """``custom_densities`` as a map; a path names a finished run's ``summary.json``, whose final
        per-layer densities are used (the report's re-initialisation and lottery rows)."""
        if self.distribution != "custom":  # the option is ignored, and never read, under other distributions
            return None
        if not isinstance(self.custom_densities, str):
            return self.custom_densities
        return self.source_summary()["layer_densities"]

    def source_summary(self) -> dict[str, Any]:
        """The ``summary.json`` that ``custom_densities`` names."""
        option = f"masking.custom_densities={self.custom_densities!r}"
        path = Path(str(self.custom_densities))
        if not path.is_file():
            raise ConfigError(f"{option}: no such file (the run it names must finish first)")
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{option} is not a readable run summary ({error.__class__.__name__})") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("layer_densities"), dict):
            raise ConfigError(f"{option} has no layer_densities: it is not a finished run's summary.json")
        return summary

    def initial_counts(self) -> list[int]:
        """Active weights per layer at step 0."""
        shapes = {layer.name: tuple(layer.weight.shape) for layer in self.layers}
        counts = nonzero_counts(shapes, self.target_densities())
        return [counts[layer.name] for layer in self.layers]

    def initial_masks(self, counts: Sequence[int]) -> list[torch.Tensor]:
        """Exactly ``counts[l]`` active weights per layer, at uniformly random positions."""
        return [
            random_mask(layer.weight.shape, count, self.generator, layer.weight.device)
            for layer, count in zip(self.layers, counts)
        ]

    # ---------------------------------------------------------------- the topology updates
    def is_update_step(self, step: int) -> bool:
        return False

    def drop_counts(self, step: int) -> list[int]:
        return [0] * len(self.layers)

    def grow_counts(self, step: int, dropped: Sequence[int]) -> list[int]:
        return [0] * len(self.layers)

    def drop_scores(self, layer: SparseLayer) -> torch.Tensor:
        """Scores of the active weights; the lowest are dropped. Default: magnitude."""
        return layer.weight.detach().abs()

    def grow_scores(self, layer: SparseLayer) -> torch.Tensor:
        """Scores of the inactive positions; the highest are grown."""
        raise NotImplementedError(f"{type(self).__name__} grows no weights")

    def observe_gradients(self, grads: Sequence[torch.Tensor | None]) -> None:
        """Called every step with the dense gradients, before they are masked."""

    def momentum(self, layer: SparseLayer) -> torch.Tensor:
        """The layer's momentum: the optimizer's buffer (sparse: zero where the mask is false)."""
        state = self.optimizer.state.get(layer.weight, {})
        for key in ("momentum_buffer", "exp_avg"):
            if isinstance(state.get(key), torch.Tensor):
                return state[key]
        return torch.zeros_like(layer.weight)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    # ---------------------------------------------------------------- model shape
    def width_multiplier(self, count_weights: Callable[[float], int]) -> float | None:
        """Width multiplier of the model this method trains (None: the model as configured).

        ``count_weights(width)`` counts the sparsifiable weights of the model built at that width.
        """
        return None

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(kw_only=True, eq=False)
class DropAndGrow(SparseMethod):
    """Dynamic sparse training: every ``delta_t`` steps until T_end, each layer drops ``f(t) * n_active``
    smallest-magnitude weights (rounded by ``drop_rounding``), with f(t) the cosine-decayed drop fraction of
    equation 1, and grows as many (RigL, SET) or a redistributed share of the total (SNFS, RigL-SG/SM).

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

    regrown: str = "zero"
    adjust_prune_rate: bool = True
    redistribution_rule: str = "capped"
    initial_mask: str = ""  # a finished run's checkpoint whose final masks start this run (Table 5's re-init rows)

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.regrown", self.regrown, REGROWN)
        require_choice("masking.redistribution_rule", self.redistribution_rule, REDISTRIBUTION_RULES)
        require_bool("masking.adjust_prune_rate", self.adjust_prune_rate)

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
