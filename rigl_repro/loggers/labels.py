"""How a run is filed by experiment trackers, derived from its resolved config alone (no folder name, no clock).

A run folder's name (``dataset=digits,masking=rigl``) tells two runs apart only inside one experiment folder, and
says nothing of the method's distribution or density when they are defaults. Here a run is labelled by what it
is:

- ``name``: method, distribution, density, length and seed: ``rigl erk d=0.1 seed 0`` (``rigl d=0.1 2x seed 1``
  for a 2x run; ``dense seed 0``: dense training takes a density and ignores it). Read in a run list.
- ``group``: the table cell, that is the run without its seed: a readable part (dataset, model, method,
  distribution, density, length) and a short hash of the run's identity (``rigl_repro.run.identity``) without
  its seed. The hash is what makes runs that differ in anything else (the learning rate, alpha, a sweep's
  parameters, the validation split) land in different groups, so that a group's mean is always over seeds of
  one configuration. The readable part alone would not do: it leaves most of the identity out.
- ``tags``: dataset, model, method, distribution, scale, variant and run tag, for filtering.
- ``job_type``: ``train``; a sweep trial's runs say ``sweep-trial`` (``rigl_repro.sweeps.trial``).

Every part is optional in the config: configs saved before a key existed (``scale``, ``variant``) label what
they have.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rigl_repro.loggers.base import RunLabels
from rigl_repro.run.identity import identity_digest, run_identity

JOB_TYPE = "train"
GROUP_HASH_LENGTH = 8  # hex digits: 32 bits, no accidental collision among a project's configurations
TAG_LIMIT = 64  # characters, W&B's limit on a tag
DENSITY_IGNORED = frozenset({"dense"})  # methods that take a density and do not use it (``Dense``'s docstring)


def number(value: Any) -> str:
    """A number as a label shows it: ``0.1``, ``0.05``, ``1`` (no trailing zeros); anything else as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def method_parts(config: Mapping[str, Any]) -> list[str]:
    """What a run trains, as words: method, distribution (for methods that take one), density (for methods
    that use one) and the length multiplier when it is not 1 (``2x``)."""
    masking = run_identity(config)["masking"]  # only the options the method takes: no dense "distribution"
    parts: list[str] = []
    if isinstance(masking, Mapping) and masking.get("name") is not None:
        name = str(masking["name"])
        parts.append(name)
        if masking.get("distribution") is not None:
            parts.append(str(masking["distribution"]))
        if masking.get("density") is not None and name not in DENSITY_IGNORED:
            parts.append(f"d={number(masking['density'])}")
    train = config.get("train")
    multiplier = train.get("length_multiplier") if isinstance(train, Mapping) else None
    if multiplier is not None and multiplier != 1:
        parts.append(f"{number(multiplier)}x")
    return parts


def component_name(config: Mapping[str, Any], key: str) -> str | None:
    """``config[key]["name"]`` (the dataset's, the model's), or None where the config lacks it."""
    node = config.get(key)
    name = node.get("name") if isinstance(node, Mapping) else None
    return None if name is None else str(name)


def cell_hash(config: Mapping[str, Any]) -> str:
    """A short hash of the run's identity without its seed: equal exactly for the seeds of one table cell."""
    return identity_digest(config, leave_out=("seed",), length=GROUP_HASH_LENGTH)


def run_name(config: Mapping[str, Any]) -> str | None:
    """``rigl erk d=0.1 seed 0``: what the run trains and its seed (None for a config with neither)."""
    parts = method_parts(config)
    if config.get("seed") is not None:
        parts.append(f"seed {config['seed']}")
    return " ".join(parts) or None


def run_group(config: Mapping[str, Any]) -> str:
    """``cifar10 wrn22_2 rigl erk d=0.1 · 3f2a9c1e``: the run's table cell (the run without its seed)."""
    readable = [name for name in (component_name(config, "dataset"), component_name(config, "model")) if name]
    readable += method_parts(config)
    return " ".join([*readable, "·", cell_hash(config)]) if readable else cell_hash(config)


def run_tags(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Dataset, model, method, distribution, scale, variant and run tag (leading ``-`` dropped), each once, in
    that order; those the config lacks (None, empty) are left out."""
    masking = run_identity(config)["masking"]
    masking = masking if isinstance(masking, Mapping) else {}
    values = (
        component_name(config, "dataset"),
        component_name(config, "model"),
        masking.get("name"),
        masking.get("distribution"),
        config.get("scale"),
        config.get("variant"),
        str(config.get("run_tag") or "").lstrip("-"),
    )
    tags = [str(value)[:TAG_LIMIT] for value in values if value is not None and str(value)]
    return tuple(dict.fromkeys(tags))


def run_labels(config: Mapping[str, Any]) -> RunLabels:
    """How trackers file the run of resolved ``config`` (a plain mapping): see the module docstring."""
    return RunLabels(name=run_name(config), group=run_group(config), tags=run_tags(config), job_type=JOB_TYPE)
