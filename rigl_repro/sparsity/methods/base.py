"""The interface every sparse-training method implements: what to drop, what to grow, and when.

A method is a dataclass whose fields are its options, exactly the keys of its composed ``conf/masking/*.yaml``.
Options come in groups, one class each, with one shared defaults file each in ``conf/masking_options/``:
``TargetDensity`` (density.yaml), ``LayerwiseDistribution`` (distribution.yaml), ``UpdateInterval``
(update_interval.yaml), ``UpdateSchedule`` (schedule.yaml) and ``DropAndGrow`` (drop_and_grow.yaml, in
``drop_and_grow.py``). A method derives from the groups it reads, so that it takes no option that means nothing
for it (the exception, dense's ``density``, says why in its docstring), and ``build_method`` refuses any other.
Subclasses register themselves by setting ``name``; the engine (``rigl_repro.sparsity.engine``) does the mask
bookkeeping, so a method only answers questions:

- ``initial_counts`` / ``initial_masks``: the starting topology (default: every weight; with a layer-wise
  distribution, its counts at exact random masks);
- ``is_update_step``: whether the topology changes at a step (default: never);
- ``drop_counts`` / ``grow_counts``: how many weights each layer loses and gains;
- ``drop_scores`` / ``grow_scores``: which ones (the largest scores are kept / grown).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rigl_repro.errors import ConfigError, require_choice, require_in_range, require_int
from rigl_repro.sparsity.distributions import DISTRIBUTIONS, budgeted_layers, layer_densities, nonzero_counts
from rigl_repro.sparsity.masks import MASK_BUFFER, SparseLayer, random_mask
from rigl_repro.sparsity.schedules import (
    DROP_ROUNDINGS,
    UPDATE_TIMINGS,
)


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
    """What the engine, the trainer and the FLOP planner ask of a method, answered for a method with no
    options and no masks (the dense baseline): every layer in the budget, no updates, the model as configured.

    The option groups below subclass it; a method combines those it reads.
    """

    name: ClassVar[str] = ""
    masked: ClassVar[bool] = False  # True: masks on every conv/linear weight (the layer-wise distributions)
    # When the method needs the dense gradient (a dense weight-gradient pass, f_D, for FLOP accounting):
    # "never", "update_steps" (RigL) or "every_step" (SNFS).
    dense_gradients: ClassVar[str] = "never"

    def __post_init__(self) -> None:
        """Check the options: each option group checks its own, after those of the groups it builds on."""

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
        """The layers, of ``names``, whose weights count towards the density target and that updates change:
        all of them, for a method without a layer-wise distribution."""
        return list(names)

    def plan(self, total_steps: float) -> None:
        """Fix the step schedule for a run whose schedules span ``total_steps`` (the schedule length of
        ``rigl_repro.sparsity.schedules.schedule_length``; needs no model: FLOP planning uses it)."""
        self.total_steps = total_steps

    def zeroes_regrown(self) -> bool:
        """Whether a connection dropped and grown back in the same update restarts at weight zero."""
        return False

    def dense_optimizer_state(self) -> bool:
        """Whether the optimizer's state stays dense (masked weights are zeroed after its step, not their
        gradients before it): the report's SNFS, whose growth reads the optimizer's dense momentum."""
        return False

    def keeps_layer_densities(self) -> bool:
        """Whether every layer's density stays at its starting value for the whole run."""
        return True

    # ---------------------------------------------------------------- starting topology
    def initial_counts(self) -> list[int]:
        """Active weights per layer at step 0: every weight."""
        return [layer.size for layer in self.layers]

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

    # ---------------------------------------------------------------- options
    @classmethod
    def option_names(cls) -> list[str]:
        """The options this method takes: the keys of its ``masking`` node besides ``name``."""
        return [f.name for f in fields(cls)]

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Every option's default, so that a ``masking`` node missing some can be completed
        (``rigl_repro.sparsity.methods.canonical_masking``)."""
        return {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(cls)}


@dataclass(kw_only=True, eq=False)
class TargetDensity(SparseMethod):
    """``density``: the target fraction of non-zero weights (masked methods: over the budgeted layers)."""

    density: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require_in_range("masking.density", self.density, 0.0, 1.0, low_open=True)


@dataclass(kw_only=True, eq=False)
class LayerwiseDistribution(TargetDensity):
    """Masks on every conv/linear weight, their densities split across layers by ``distribution`` at
    ``density`` (``uniform`` is the report's "Random"); ``custom`` reads ``custom_densities``."""

    masked = True

    distribution: str = "uniform"
    erk_power_scale: float = 1.0
    custom_densities: dict[str, float] | str | None = None  # a map, or a finished run's summary.json

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.distribution", self.distribution, DISTRIBUTIONS)
        require_in_range("masking.erk_power_scale", self.erk_power_scale, 0.0, math.inf, low_open=True)

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
        """Active weights per layer at step 0: the distribution's."""
        shapes = {layer.name: tuple(layer.weight.shape) for layer in self.layers}
        counts = nonzero_counts(shapes, self.target_densities())
        return [counts[layer.name] for layer in self.layers]


@dataclass(kw_only=True, eq=False)
class UpdateInterval(SparseMethod):
    """``delta_t``: the steps between topology updates (drop-and-grow) or pruning steps."""

    delta_t: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int("masking.delta_t", self.delta_t, 1)


@dataclass(kw_only=True, eq=False)
class UpdateSchedule(UpdateInterval):
    """When updates happen and how many weights they remove: ``update_timing`` and ``drop_rounding`` choose
    between the report's code and Evci et al.'s where they differ by a step or a weight
    (``rigl_repro.sparsity.schedules``; docs/fidelity.md)."""

    update_timing: str = "report_code"
    drop_rounding: str = "ceil"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.update_timing", self.update_timing, UPDATE_TIMINGS)
        require_choice("masking.drop_rounding", self.drop_rounding, DROP_ROUNDINGS)
