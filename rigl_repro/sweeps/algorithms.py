"""Optuna's samplers and pruners from their config groups (``conf/hydra/sweeper/sampler``, ``.../pruner``).

Each option is one of Optuna's own classes, named by ``_target_``; every other key of the node is an argument of
that class, checked against its signature so that a typo or an option the class does not take is refused in one
line naming the class (Optuna would raise a TypeError, or for a few options silently accept it). An argument
that takes an object (``independent_sampler``, NSGA-II's ``crossover``) may be given as a node with its own
``_target_``.

Seeding for exact resume: a sampler is built again for every proposal, seeded with ``seed`` plus the number of
proposals made before it, so that a resumed sweep proposes what an uninterrupted one would have (the samplers keep
no state of their own between proposals: TPE, NSGA-II, CMA-ES, GP and the grid read everything from the study).
The QMC and grid samplers are the exceptions: their seed fixes an order over the whole sweep (the scrambling of
QMC's sequence, the shuffled order of the grid's combinations), and their position in it comes from the study,
so they keep the seed as given. With ``seed: null`` no sampler is reproducible.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from hydra.utils import get_class, instantiate
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from rigl_repro.errors import ConfigError, require_choice, require_int

AUTO_SINGLE = "optuna.samplers.TPESampler"  # sampler=auto with one objective (the report's sampler)
AUTO_MULTI = "optuna.samplers.NSGAIISampler"  # sampler=auto with several objectives
# Samplers whose seed fixes an order over the whole sweep (QMC: the sequence's scrambling; the grid: the order of
# its combinations, by which each trial's combination is numbered): the seed is kept, never advanced.
FIXED_SEED = (optuna.samplers.QMCSampler, optuna.samplers.GridSampler)
GRID_SIZE_LIMIT = 100_000  # combinations; a larger grid is a typo (a range with a small step), not a sweep


def short_name(target: str) -> str:
    """``optuna.samplers.TPESampler`` -> ``TPESampler``, for messages."""
    return target.rsplit(".", 1)[-1]


def optuna_class(kind: str, target: Any, base: type) -> type:
    """The class ``target`` names, if it is one of Optuna's ``base`` classes; else a one-line ConfigError."""
    if not isinstance(target, str) or not target:
        raise ConfigError(f"hydra.sweeper.{kind}._target_={target!r} is not a class name; choose one with "
                          f"hydra/sweeper/{kind}=...")  # fmt: skip
    try:
        cls = get_class(target)
    except Exception:  # Hydra wraps the ImportError or AttributeError
        raise ConfigError(f"hydra.sweeper.{kind}._target_={target} names no class; choose one with "
                          f"hydra/sweeper/{kind}=... (conf/hydra/sweeper/{kind})") from None  # fmt: skip
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"hydra.sweeper.{kind}._target_={target} is not an Optuna {base.__name__}")
    return cls


def accepted_options(cls: type) -> list[str]:
    """The keyword arguments ``cls`` takes (a class taking ``**kwargs`` takes none that we can check)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def checked_options(kind: str, target: str, cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as arguments of ``cls``; an option it does not take is refused in one line naming it."""
    accepted = accepted_options(cls)
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"hydra.sweeper.{kind}.{key}: {short_name(target)} takes no option {key!r}; its options are "
                f"{', '.join(accepted) or 'none'}"
            )
    return {key: instantiate(value) if isinstance(value, Mapping) else value for key, value in options.items()}


def split_node(node: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """A config node as (its ``_target_``, its other keys)."""
    options = dict(node or {})
    return options.pop("_target_", None), options


def sampler_target(node: Mapping[str, Any] | None, objectives: int) -> str:
    """The class the sampler node names; ``_target_: null`` (sampler=auto) by the number of objectives."""
    target, _ = split_node(node)
    if target is None:
        return AUTO_MULTI if objectives > 1 else AUTO_SINGLE
    return target


def grid_of(space: Mapping[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The grid sampler's search space: every value of each searched option, which must be finite."""
    grid: dict[str, list[Any]] = {}
    for key, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            grid[key] = list(distribution.choices)
        elif isinstance(distribution, (IntDistribution, FloatDistribution)) and distribution.step is not None:
            count = int(round((distribution.high - distribution.low) / distribution.step)) + 1
            grid[key] = [distribution.low + index * distribution.step for index in range(count)]
            if isinstance(distribution, FloatDistribution):
                grid[key] = [round(value, 12) for value in grid[key]]  # 0.1 + 2 * 0.1 is not 0.3
        else:
            raise ConfigError(f"{key}: hydra/sweeper/sampler=grid needs a finite set of values; give "
                              "choice(...), a comma list or range(...), not an interval")  # fmt: skip
    size = 1
    for values in grid.values():
        size *= len(values)
    if size > GRID_SIZE_LIMIT:
        raise ConfigError(f"hydra/sweeper/sampler=grid: the grid has {size} combinations (more than "
                          f"{GRID_SIZE_LIMIT}); use fewer values or another sampler")  # fmt: skip
    return grid


def check_sampler(node: Mapping[str, Any] | None, objectives: int, space: Mapping[str, BaseDistribution]) -> None:
    """Refuse, in one line, a sampler node that cannot be built: an unknown class or option, a bad seed, a grid
    over an interval. Building it once here finds what its constructor itself refuses."""
    target, options = split_node(node)
    if options.get("seed") is not None:
        require_int("hydra.sweeper.sampler.seed", options["seed"], 0, 2**31 - 1)
    build_sampler(node, objectives, space, proposals_made=0)


def build_sampler(
    node: Mapping[str, Any] | None, objectives: int, space: Mapping[str, BaseDistribution], proposals_made: int
) -> optuna.samplers.BaseSampler:
    """The sampler for the next proposal: the node's class and options, seeded with ``seed + proposals_made``
    (the QMC and grid samplers: ``seed``); see the module's docstring."""
    target = sampler_target(node, objectives)
    _, options = split_node(node)
    cls = optuna_class("sampler", target, optuna.samplers.BaseSampler)
    arguments = checked_options("sampler", target, cls, options)
    if arguments.get("seed") is not None and not issubclass(cls, FIXED_SEED):
        arguments["seed"] = int(arguments["seed"]) + proposals_made
    if issubclass(cls, optuna.samplers.GridSampler):
        if "search_space" in options:
            raise ConfigError("hydra.sweeper.sampler.search_space: the grid is the sweep's params; give the values "
                              "there, e.g. 'masking.alpha=0.1,0.3,0.5'")  # fmt: skip
        arguments["search_space"] = grid_of(space)
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"hydra/sweeper/sampler: {short_name(target)} refuses its options ({reason})") from None


def build_pruner(node: Mapping[str, Any] | None) -> optuna.pruners.BasePruner | None:
    """The pruner the node names, or None for ``pruner=none`` (``_target_: null``)."""
    target, options = split_node(node)
    if target is None:
        if options:
            raise ConfigError(f"hydra.sweeper.pruner.{next(iter(options))}: pruner=none takes no options; choose "
                              "a pruner first, e.g. hydra/sweeper/pruner=median")  # fmt: skip
        return None
    cls = optuna_class("pruner", target, optuna.pruners.BasePruner)
    arguments = checked_options("pruner", target, cls, options)
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"hydra/sweeper/pruner: {short_name(target)} refuses its options ({reason})") from None


def grid_size(node: Mapping[str, Any] | None, objectives: int, space: Mapping[str, BaseDistribution]) -> int | None:
    """How many trials the grid sampler has to propose, or None for any other sampler (no end)."""
    if not issubclass(optuna_class("sampler", sampler_target(node, objectives), optuna.samplers.BaseSampler),
                      optuna.samplers.GridSampler):  # fmt: skip
        return None
    size = 1
    for values in grid_of(space).values():
        size *= len(values)
    return size


def directions_of(direction: str | Sequence[str], objectives: int) -> list[str]:
    """``hydra.sweeper.direction`` as one direction per objective; a single word is accepted for one objective."""
    directions = [direction] if isinstance(direction, str) else list(direction)
    for value in directions:
        require_choice("hydra.sweeper.direction", value, ("maximize", "minimize"))
    if len(directions) != objectives:
        raise ConfigError(
            f"hydra.sweeper.direction gives {len(directions)} direction(s) for {objectives} objective(s); give one "
            "per objective, e.g. 'hydra.sweeper.objectives=[val_acc,train_flops]' "
            "'hydra.sweeper.direction=[maximize,minimize]'"
        )
    return directions
