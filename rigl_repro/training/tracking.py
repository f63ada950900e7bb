"""Experiment tracking with Weights & Biases, optional: ``logger.mode`` online, offline or disabled."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rigl_repro.errors import ConfigError, require_choice

MODES = ("online", "offline", "disabled")
INIT_TIMEOUT_S = 60  # W&B's own default is 90 s; online runs without a network fail after this


PROJECT_NAME_FORBIDDEN = set("/\\#?%:")  # characters W&B refuses in a project name


def validate_logger(mode: str, project: str) -> str:
    """``logger.mode`` must be one of ``MODES``, and ``logger.project`` a name W&B accepts."""
    require_choice("logger.mode", mode, MODES)
    if mode != "disabled" and (not project or PROJECT_NAME_FORBIDDEN & set(str(project))):
        raise ConfigError(
            f"logger.project={project!r} is invalid; expected a name without any of / \\ # ? % :"
        )
    return mode


class Tracker:
    """A W&B run in ``output_dir`` (offline by default: no account needed; ``wandb sync`` uploads later).

    The run id is stable per output directory, so a resumed run continues the same W&B run.
    """

    def __init__(self, mode: str, project: str, entity: str | None, config: Mapping[str, Any], output_dir: Path):
        validate_logger(mode, project)
        self.run = None
        if mode == "disabled":
            return
        import wandb  # imported only when used: it is slow to import

        run_id = hashlib.sha1(output_dir.resolve().as_posix().encode()).hexdigest()[:16]
        try:
            self.run = wandb.init(
                mode=mode,
                project=project,
                entity=entity,
                config=dict(config),
                dir=str(output_dir),
                name=output_dir.name,
                id=run_id,
                resume="allow",
                settings=wandb.Settings(quiet=True, init_timeout=INIT_TIMEOUT_S),
            )
        except Exception as error:  # no network, no login, a refused project: W&B's errors are many
            reason = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
            raise ConfigError(
                f"W&B could not start a {mode} run ({reason}); check logger.project and logger.entity, or use "
                "logger.mode=offline (and `wandb sync` later) or logger.mode=disabled"
            ) from None

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
