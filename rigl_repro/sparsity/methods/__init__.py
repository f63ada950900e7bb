"""Sparse-training methods, one module each. Every module in this package is imported here, so a new
method is one new file (a ``SparseMethod`` subclass with a ``name``, deriving from the option groups it
reads) plus one ``conf/masking/*.yaml`` (the same groups' ``conf/masking_options`` files in its defaults)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rigl_repro.errors import ConfigError
from rigl_repro.registry import import_modules, named_subclasses
from rigl_repro.sparsity.methods.base import (
    LayerwiseDistribution,
    SparseMethod,
    TargetDensity,
    UpdateInterval,
    UpdateSchedule,
)
from rigl_repro.sparsity.methods.drop_and_grow import DropAndGrow

import_modules(__name__, __path__)


def available_methods() -> dict[str, type[SparseMethod]]:
    """Every registered method by name."""
    return named_subclasses(SparseMethod)


def build_method(config: Mapping[str, Any]) -> SparseMethod:
    """The method that ``config`` (a ``masking`` config group: ``name`` plus options) describes.

    Raises ConfigError for an unknown method or option, or an option outside its allowed values.
    """
    options = dict(config)
    name = options.pop("name", None)
    methods = available_methods()
    if name not in methods:
        raise ConfigError(f"masking.name={name!r} is not a known method; choose one of: {', '.join(methods)}")
    cls = methods[name]
    unknown = sorted(set(options) - set(cls.option_names()))
    if unknown:
        raise ConfigError(
            f"masking.{unknown[0]} is not an option of method {name!r}; its options are: "
            f"{', '.join(cls.option_names())}"
        )
    if isinstance(options.get("custom_densities"), Mapping):
        options["custom_densities"] = dict(options["custom_densities"])
    return cls(**options)


def canonical_masking(masking: Mapping[str, Any]) -> dict[str, Any]:
    """A ``masking`` node as the method it names takes it: ``name`` and those of its keys that are options of
    the method, and nothing else.

    Runs are matched by their configuration (``rigl_repro.run.identity.run_identity``). Summaries and
    checkpoints written before each method took only its own options hold every method's node with all the
    shared keys (a dense run's ``alpha``, a static run's ``redistribution``), which meant nothing for it; both
    layouts of one run give the same dict here, and so do a preset's name and the method it presets
    (``rigl_sg`` and ``rigl`` with ``redistribution: grad``). A key the node lacks stays missing, never filled
    with today's default: a run recorded before an option existed was trained without it, so it is not today's
    run. A node naming no known method is returned as it is.
    """
    methods = available_methods()
    name = masking.get("name")
    if name not in methods:
        return dict(masking)
    method = methods[name]
    options = method.option_defaults()
    # A preset (``rigl_sg``) is the run of the method it presets, spelled either way.
    same_run = {"name": method.variant_of or name}
    inert = method.inert_options(masking)
    return {**same_run, **{option: masking[option] for option in options if option in masking and option not in inert}}


__all__ = [
    "DropAndGrow",
    "LayerwiseDistribution",
    "SparseMethod",
    "TargetDensity",
    "UpdateInterval",
    "UpdateSchedule",
    "available_methods",
    "build_method",
    "canonical_masking",
]
