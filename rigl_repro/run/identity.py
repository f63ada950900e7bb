"""A run's identity: the part of its resolved configuration that determines its results.

One definition, used wherever runs are matched: a checkpoint resumes (``training.checkpoint``), a finished run
is reused (``training.session``), an export is checked against its run (``export``), and a run fills a table
cell (``reporting.runs``) only under the same identity. It works on plain mappings, so that the configs saved
in ``summary.json`` files and checkpoint fingerprints of every earlier layout are compared alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from typing import Any

from rigl_repro.data import location_options
from rigl_repro.sparsity.methods import canonical_masking

IDENTITY_KEYS = ("dataset", "model", "masking", "train", "seed")
# Training options that change how fast a run goes, not what it computes (same optimizer, schedule, data
# and masks), so a run may resume, and counts in its table cell, under any of their values.
EXECUTION_OPTIONS = ("amp", "channels_last", "compile", "eval_batch_size")


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run's resolved configuration (a plain mapping) that determines its results."""
    identity = {key: config.get(key) for key in IDENTITY_KEYS}
    if isinstance(identity["masking"], Mapping):  # only the options its method takes, in either layout
        identity["masking"] = canonical_masking(identity["masking"])
    if isinstance(identity["train"], Mapping):
        identity["train"] = {k: v for k, v in identity["train"].items() if k not in EXECUTION_OPTIONS}
    if isinstance(identity["dataset"], Mapping):
        # where the data are found, not what they are (each dataset declares its own; the files are checked)
        where = location_options(identity["dataset"])
        identity["dataset"] = {k: v for k, v in identity["dataset"].items() if k not in where}
    distributed = config.get("distributed")
    per_process = isinstance(distributed, Mapping) and distributed.get("sync_batchnorm") is False
    if per_process or config.get("batchnorm") == "per_process":  # the latter: an identity given again
        identity["batchnorm"] = "per_process"  # not the recipe's statistics (absent otherwise: older runs match)
    return identity


def identity_digest(config: Mapping[str, Any], leave_out: Collection[str] = (), length: int = 16) -> str:
    """A short hex digest of the identity of resolved ``config`` less the ``leave_out`` keys (e.g. ``seed``:
    equal for the seeds of one table cell): what a run folder records and a tracker's group ends in."""
    identity = {key: value for key, value in run_identity(config).items() if key not in leave_out}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:length]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class Absent:
    """An option one of two configs lacks: it differs from every value, None included, as identities compared
    whole (the reports' index) differ."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = Absent()


def identity_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """How the identity of the run of config ``current`` differs from that of ``saved``: one
    ``(option, saved value, current value)`` per differing option (dotted names, sorted; ``ABSENT`` where a
    config lacks it); empty exactly when the two identities are equal."""
    before, after = flatten(run_identity(saved)), flatten(run_identity(current))
    keys = sorted(before.keys() | after.keys())
    return [(key, before.get(key, ABSENT), after.get(key, ABSENT)) for key in keys
            if before.get(key, ABSENT) != after.get(key, ABSENT)]  # fmt: skip


def describe_changes(changes: list[tuple[str, Any, Any]], limit: int = 4) -> str:
    """``identity_changes`` in a few words: ``masking.density: 0.1 -> 0.2, seed: 0 -> 1``."""
    shown = ", ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes[:limit])
    return shown + (f" and {len(changes) - limit} more" if len(changes) > limit else "")
