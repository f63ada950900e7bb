"""Experiment tracking with Weights & Biases, optional: ``logger.mode`` online, offline or disabled."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rigl_repro.errors import require_choice

MODES = ("online", "offline", "disabled")


def validate_mode(mode: str) -> str:
    """``logger.mode`` must be one of ``MODES``."""
    return require_choice("logger.mode", mode, MODES)


class Tracker:
    """A W&B run in ``output_dir`` (offline by default: no account needed; ``wandb sync`` uploads later).

    The run id is stable per output directory, so a resumed run continues the same W&B run.
    """

    def __init__(self, mode: str, project: str, entity: str | None, config: Mapping[str, Any], output_dir: Path):
        validate_mode(mode)
        self.run = None
        if mode == "disabled":
            return
        import wandb  # imported only when used: it is slow to import

        run_id = hashlib.sha1(output_dir.resolve().as_posix().encode()).hexdigest()[:16]
        self.run = wandb.init(
            mode=mode,
            project=project,
            entity=entity,
            config=dict(config),
            dir=str(output_dir),
            name=output_dir.name,
            id=run_id,
            resume="allow",
            settings=wandb.Settings(quiet=True),
        )

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(dict(metrics), step=step)

    def summarize(self, summary: Mapping[str, Any]) -> None:
        """Store a run's final numbers in the W&B run summary (what ``reporting.wandb_summaries`` reads)."""
        if self.run is not None:
            self.run.summary.update(dict(summary))

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
