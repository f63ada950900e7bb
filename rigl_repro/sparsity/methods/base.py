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

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rigl_repro.errors import ConfigError, require_choice, require_in_range, require_int
from rigl_repro.results import SummaryError, load_summary
from rigl_repro.sparsity.distributions import DISTRIBUTIONS, budgeted_layers, layer_densities, nonzero_counts
from rigl_repro.sparsity.masks import MASK_BUFFER, SparseLayer
from rigl_repro.sparsity.schedules import (
    DROP_ROUNDINGS,
    UPDATE_TIMINGS,
)
from rigl_repro.sparsity.structure import (
    N_OF_M,
    STRUCTURE_OPTIONS,
    STRUCTURES,
    UNSTRUCTURED,
    MaskStructure,
    build_structure,
)

WEIGHTS_FILE = "a run's weights file (its checkpoint.pt or initial.pt)"
SUMMARY = "a finished run's summary.json"


def require_file(option: str, path: str, expected: str) -> Path:
    """``path``, if it names a file; otherwise a one-line ConfigError naming ``option`` and saying what is wrong
    (it is unset, a directory, or absent) and what it should name: ``expected``."""
    if not path:
        raise ConfigError(f"{option} is not set; give the path of {expected}")
    if Path(path).is_dir():
        raise ConfigError(f"{option}={path!r} is a directory; give the path of {expected}, a file")
    if not Path(path).is_file():
        raise ConfigError(f"{option}={path!r}: no such file; give the path of {expected} (its run must finish first)")
    return Path(path)


class SavedWeights(dict):
    """A model state dict read from another run's file. ``source`` names the file as the user gave it
    (``option='path'``), so that every check made on the weights says whose they are."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], source: str) -> None:
        super().__init__(tensors)
        self.source = source


def load_model_weights(path: str, option: str) -> SavedWeights:
    """The model state dict in ``path`` (a bare state dict, or a checkpoint with a ``"model"`` entry), read
    without unpickling arbitrary objects: names to tensors, or a one-line ConfigError naming ``option``."""
    source = f"{option}={path!r}"
    file = require_file(option, path, WEIGHTS_FILE)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or unsafe file is the same problem for the user
        raise ConfigError(f"{source} is not a readable weights file ({error.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in state.items()
    ):
        raise ConfigError(f"{source} does not hold a state dict (names to tensors); give the path of {WEIGHTS_FILE}")
    return SavedWeights(state, source)


def require_fit(weights: SavedWeights, own: Mapping[str, torch.Tensor]) -> None:
    """Refuse the weights of another model: the first tensor whose name is in ``own`` (this model's tensors)
    but whose shape differs, in one line naming the file."""
    for name, saved in weights.items():
        if name in own and saved.shape != own[name].shape:
            raise ConfigError(
                f"{weights.source} holds another model's weights: its {name} has shape {tuple(saved.shape)}, "
                f"this model's has {tuple(own[name].shape)}; give the files of a run of this model and width"
            )


def saved_mask(weights: SavedWeights, layer: SparseLayer) -> torch.Tensor | None:
    """``layer``'s mask in ``weights``, or None if they hold none. Weights or a mask of another shape than
    ``layer``'s, and a mask that is not boolean, are refused in one line naming the file."""
    name = layer.name.removesuffix("weight") + MASK_BUFFER
    require_fit(weights, {layer.name: layer.weight, name: layer.mask})
    saved = weights.get(name)
    if saved is None or saved.dtype == torch.bool:
        return saved
    binary = bool(((saved == 0) | (saved == 1)).all())
    what = f"is a {saved.dtype} tensor" if binary else "holds values other than 0 and 1"
    raise ConfigError(
        f"{weights.source}: its {name} {what}, and a mask is a torch.bool tensor; give the checkpoint.pt of a "
        "rigl-repro run"
    )


@dataclass(kw_only=True, eq=False)
class SparseMethod:
    """What the engine, the trainer and the FLOP planner ask of a method, answered for a method with no
    options and no masks (the dense baseline): every layer in the budget, no updates, the model as configured.

    The option groups below subclass it; a method combines those it reads.
    """

    name: ClassVar[str] = ""
    # The masked weight that reads the model's input (Uniform keeps it dense): set by the engine before
    # ``setup`` from a forward pass; None means the first layer registered, as for the report's models.
    input_layer: ClassVar[str | None] = None
    # A preset of another method (RigL-SG is RigL with one option fixed): runs are identified by that method.
    variant_of: ClassVar[str | None] = None
    masked: ClassVar[bool] = False  # True: masks on every conv/linear weight (the layer-wise distributions)
    # Which masks a layer may have (rigl_repro.sparsity.structure): every mask is selected through it.
    mask_structure: ClassVar[MaskStructure] = MaskStructure()
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
        """Exactly ``counts[l]`` active weights per layer, at uniformly random positions (of the structure)."""
        return [
            self.mask_structure.random(tuple(layer.weight.shape), count, self.generator, layer.weight.device)
            for layer, count in zip(self.layers, counts)
        ]

    # ---------------------------------------------------------------- the topology updates
    def is_update_step(self, step: int) -> bool:
        return False

    def drop_counts(self, step: int) -> list[int]:
        return [0] * len(self.layers)

    def grow_counts(self, step: int, dropped: Sequence[int]) -> list[int]:
        return [0] * len(self.layers)

    def update_structure(self, index: int) -> MaskStructure:
        """The structure the update being made selects layer ``index``'s mask under (after ``drop_counts``):
        the method's own, unless its updates reshape it (SRigL's ablated neurons)."""
        return self.mask_structure

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

    def engine_refusal(self) -> str | None:
        """Why the engine cannot run this method (one line saying what to do instead), or None."""
        return None

    # ---------------------------------------------------------------- model shape
    def width_multiplier(self, count_weights: Callable[[float], int]) -> float | None:
        """Width multiplier of the model this method trains (None: the model as configured).

        ``count_weights(width)`` counts the sparsifiable weights of the model built at that width.
        """
        return None

    # ---------------------------------------------------------------- options
    @classmethod
    def inert_options(cls, options: Mapping[str, Any]) -> set[str]:
        """The options of a ``masking`` node that mean nothing given its other values, and so are left out of
        a run's identity (``canonical_masking``): none, unless a group says otherwise."""
        return set()

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
    structure: str = UNSTRUCTURED  # rigl_repro.sparsity.structure: unstructured | fan_in | nm
    n: int = 2  # nm: at most n active ...
    m: int = 4  # ... of every m consecutive inputs

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.distribution", self.distribution, DISTRIBUTIONS)
        require_in_range("masking.erk_power_scale", self.erk_power_scale, 0.0, math.inf, low_open=True)
        require_choice("masking.structure", self.structure, STRUCTURES)
        self.mask_structure = build_structure(self.structure, self.n, self.m)
        if self.structure == N_OF_M and self.distribution != "uniform":
            raise ConfigError(
                f"masking.structure=nm gives every layer density n/m = {self.n}/{self.m}, which "
                f"masking.distribution={self.distribution} would spread differently; use masking.distribution=uniform"
            )

    @classmethod
    def inert_options(cls, options: Mapping[str, Any]) -> set[str]:
        """Unstructured masks read no structure option (so runs from before structures existed are today's),
        N:M masks no density (n/m is theirs), fan-in masks no n or m."""
        structure = options.get("structure", UNSTRUCTURED)
        if structure == UNSTRUCTURED:
            return set(STRUCTURE_OPTIONS)
        return {"density"} if structure == N_OF_M else {"n", "m"}

    def layer_counts(self, shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
        """Active weights per layer at the distribution's densities, under the mask structure: exact integer
        counts (``nonzero_counts``), a whole fan-in per neuron, or every N:M group full. A dense layer stays
        dense under any structure."""
        densities = self.distribution_densities(shapes)
        if self.structure == UNSTRUCTURED:
            return nonzero_counts(shapes, densities)
        structure = self.mask_structure
        return {
            name: math.prod(shape) if densities[name] >= 1.0 else structure.count(tuple(shape), densities[name])
            for name, shape in shapes.items()
        }

    def budget(self, names: Sequence[str]) -> list[str]:
        """The layers, of ``names``, whose weights count towards the density target and that updates change.

        Uniform leaves out the first layer. Densities read from a run's ``summary.json`` keep that run's
        budget (its ``budgeted_layers``): a run started from a Uniform run leaves the first layer alone too.
        """
        if self.distribution == "custom" and isinstance(self.custom_densities, str):
            saved = self.source_summary().get("budgeted_layers")
            if saved is not None:
                return [name for name in names if name in set(saved)]
        return budgeted_layers(self.distribution, {name: () for name in names}, self.input_layer)

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
            custom_densities=self.custom_density_map(list(shapes)),
            input_layer=self.input_layer,
        )

    def custom_density_map(self, names: Sequence[str]) -> Mapping[str, float] | None:
        """``custom_densities`` as a map, for a model whose masked layers are ``names``; a path names a finished
        run's ``summary.json``, whose final per-layer densities are used (the report's re-initialisation and
        lottery rows)."""
        if self.distribution != "custom":  # the option is ignored, and never read, under other distributions
            return None
        if not isinstance(self.custom_densities, str):
            return self.custom_densities
        return self.summary_densities(names)

    def summary_densities(self, names: Sequence[str]) -> dict[str, float]:
        """The final per-layer densities of the summary ``custom_densities`` names: refused, in one line naming
        the file, unless there is one for each of ``names`` (this model's masked layers) and no other, each
        in (0, 1]."""
        option = f"masking.custom_densities={self.custom_densities!r}"
        densities = self.source_summary()["layer_densities"]
        if sorted(densities) != sorted(names):
            raise ConfigError(
                f"{option} holds the densities of another model's {len(densities)} layers ({', '.join(densities)}), "
                f"not of this model's {len(names)} ({', '.join(names)}); name the summary of a run of this model"
            )
        return {
            name: require_in_range(f"{option}: its layer_densities[{name}]", densities[name], 0.0, 1.0, low_open=True)
            for name in names
        }

    def source_summary(self) -> dict[str, Any]:
        """The run summary that ``custom_densities`` names, with its per-layer densities (names to numbers)
        and, where it has one, its list of budgeted layers among them; anything else is refused in one line."""
        option = f"masking.custom_densities={self.custom_densities!r}"
        path = require_file("masking.custom_densities", str(self.custom_densities), SUMMARY)
        try:
            summary = load_summary(path)
        except SummaryError as error:
            raise ConfigError(f"masking.custom_densities: {error}") from None
        densities, budget = summary.get("layer_densities"), summary.get("budgeted_layers", [])
        if not isinstance(densities, dict) or not densities:
            raise ConfigError(f"{option} has no layer_densities: it is not {SUMMARY}")
        if not isinstance(budget, list) or not set(budget) <= set(densities):
            raise ConfigError(f"{option}: its budgeted_layers is not a list of its layers; it is not {SUMMARY}")
        return summary

    def initial_counts(self) -> list[int]:
        """Active weights per layer at step 0: the distribution's, under the mask structure."""
        counts = self.layer_counts({layer.name: tuple(layer.weight.shape) for layer in self.layers})
        for layer in self.layers:
            self.mask_structure.check_layer(layer.name, tuple(layer.weight.shape))
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
