"""Checkpoints: written atomically, loaded without unpickling arbitrary objects, and refused with a clear
message when they come from another configuration or are unreadable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rigl_repro.errors import ConfigError
from rigl_repro.results import atomic_file
from rigl_repro.run.identity import describe_changes, identity_changes

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


def load_checkpoint(path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking that it was written by the run of ``config`` (a resolved
    config, or a run's identity: ``rigl_repro.run.identity``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupted or unsafe files all mean "cannot resume from this"
        raise CheckpointError(
            f"{path} cannot be read ({error.__class__.__name__}); move it away to start this run afresh"
        ) from None
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise CheckpointError(f"{path} is not a rigl-repro checkpoint; move it away to start this run afresh")
    try:
        saved = json.loads(state["fingerprint"])
    except (TypeError, ValueError):
        raise CheckpointError(f"{path} has an unreadable fingerprint; move it away to start this run afresh") from None
    changes = identity_changes(saved, config) if isinstance(saved, Mapping) else [("fingerprint", saved, None)]
    if changes:
        raise CheckpointError(
            f"{path} belongs to a different configuration ({describe_changes(changes)}); use another output "
            "directory (hydra.run.dir=...) or move the checkpoint away"
        )
    return state
