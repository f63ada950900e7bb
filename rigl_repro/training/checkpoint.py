"""Checkpoints: written atomically, loaded without unpickling arbitrary objects, and refused with a clear
message when they come from another configuration or are unreadable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rigl_repro.errors import ConfigError
from rigl_repro.results import atomic_file, run_identity

CHECKPOINT_FILE = "checkpoint.pt"
INITIAL_WEIGHTS_FILE = "initial.pt"  # the weights at step 0, which lottery tickets start from


class CheckpointError(ConfigError):
    """A checkpoint cannot be used to resume this run."""


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_file(path) as temporary:
        try:
            torch.save(dict(state), temporary)
        except RuntimeError as error:  # torch reports a full disk as a RuntimeError from its zip writer
            raise OSError(f"torch.save failed: {str(error).splitlines()[0]}") from error


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


def load_checkpoint(path: Path, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking that it was written under the same ``fingerprint``
    (the configuration that determines the run's results)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupted or unsafe files all mean "cannot resume from this"
        raise CheckpointError(
            f"{path} cannot be read ({error.__class__.__name__}); move it away to start this run afresh"
        ) from None
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise CheckpointError(f"{path} is not a rigl-repro checkpoint; move it away to start this run afresh")
    saved, current = flatten(run_identity(json.loads(state["fingerprint"]))), flatten(fingerprint)
    changed = sorted(key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key))
    if changed:
        details = ", ".join(f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in changed[:4])
        raise CheckpointError(
            f"{path} belongs to a different configuration ({details}); use another output directory "
            "(hydra.run.dir=...) or move the checkpoint away"
        )
    return state
