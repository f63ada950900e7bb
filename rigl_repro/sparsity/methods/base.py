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

from rigl_repro.errors import ConfigError, require_choice, require_in_range, require_int
from rigl_repro.sparsity.distributions import DISTRIBUTIONS, layer_densities, nonzero_counts
from rigl_repro.sparsity.masks import SparseLayer, random_mask
from rigl_repro.sparsity.redistribution import allocate_proportionally
from rigl_repro.sparsity.schedules import cosine_drop_fraction, end_step, is_periodic_update

REDISTRIBUTIONS = ("none", "grad", "momentum")


@dataclass(kw_only=True, eq=False)
class SparseMethod:
    """A sparse-training method with the options every method shares.

    ``density`` is the target fraction of non-zero weights over the budgeted layers, split across layers by
    ``distribution`` (``uniform`` is the report's "Random"). ``alpha``, ``delta_t`` and ``t_end_fraction``
    are RigL's drop fraction, update interval and the fraction of training after which masks freeze.
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

    def __post_init__(self) -> None:
        require_in_range("masking.density", self.density, 0.0, 1.0, low_open=True)
        require_choice("masking.distribution", self.distribution, DISTRIBUTIONS)
        require_in_range("masking.erk_power_scale", self.erk_power_scale, 0.0, math.inf, low_open=True)
        require_in_range("masking.alpha", self.alpha, 0.0, 1.0)
        require_in_range("masking.t_end_fraction", self.t_end_fraction, 0.0, 1.0, low_open=True)
        require_choice("masking.redistribution", self.redistribution, REDISTRIBUTIONS)
        require_int("masking.delta_t", self.delta_t, 1)

    # ---------------------------------------------------------------- wiring (called once by the engine)
    def setup(
        self,
        model: nn.Module,
        layers: list[SparseLayer],
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        generator: torch.Generator,
    ) -> None:
        """Receive the objects the method reads from; subclasses allocate their state here."""
        self.model, self.layers, self.optimizer, self.generator = model, layers, optimizer, generator
        self.plan(total_steps)

    def plan(self, total_steps: int) -> None:
        """Fix the step schedule for a run of ``total_steps`` (needs no model: FLOP planning uses it)."""
        self.total_steps = total_steps
        self.t_end = end_step(total_steps, self.t_end_fraction)

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
        if not isinstance(self.custom_densities, str):
            return self.custom_densities
        path = Path(self.custom_densities)
        if not path.is_file():
            raise ConfigError(
                f"masking.custom_densities={self.custom_densities!r}: no such file (the run it names must "
                "finish first)"
            )
        return json.loads(path.read_text())["layer_densities"]

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


class DropAndGrow(SparseMethod):
    """Dynamic sparse training: every ``delta_t`` steps until T_end, each layer drops the
    ``floor(f(t) * n_active)`` smallest-magnitude weights, with f(t) the cosine-decayed drop fraction of
    equation 1, and grows as many (RigL, SET) or a redistributed share of the total (SNFS, RigL-SG/SM).

    Subclasses define ``grow_scores``.
    """

    def is_update_step(self, step: int) -> bool:
        return is_periodic_update(step, self.delta_t, self.t_end)

    def drop_counts(self, step: int) -> list[int]:
        fraction = cosine_drop_fraction(step, self.alpha, self.t_end)
        return [math.floor(fraction * layer.n_active) for layer in self.layers]

    def grow_counts(self, step: int, dropped: Sequence[int]) -> list[int]:
        if self.redistribution == "none":
            return list(dropped)
        capacities = [layer.size - layer.n_active + n for layer, n in zip(self.layers, dropped)]
        return allocate_proportionally(sum(dropped), self.redistribution_scores(), capacities)

    def redistribution_scores(self) -> list[float]:
        """Mean magnitude over active weights of the sparse gradient or momentum, per layer (section 6.2).

        One host read per update, never per step.
        """
        means = []
        for layer in self.layers:
            source = layer.weight.grad if self.redistribution == "grad" else self.momentum(layer)
            if source is None:
                source = torch.zeros_like(layer.weight)
            means.append((source.abs() * layer.mask).sum() / max(layer.n_active, 1))
        return torch.stack(means).tolist()
