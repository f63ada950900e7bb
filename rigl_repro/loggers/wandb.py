"""``logger=wandb`` (the default): Weights & Biases, ``logger.mode`` online, offline or disabled.

W&B itself is imported only when a run starts one: ``logger.mode=disabled`` never imports it, so machines
without its wheel (the GPU check's) still train.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from rigl_repro.errors import ConfigError, require_choice
from rigl_repro.loggers.base import Logger, RunLabels
from rigl_repro.sweeps.objectives import run_objectives

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
INIT_TIMEOUT_S = 60  # W&B's own default is 90 s; online runs without a network fail after this


PROJECT_NAME_FORBIDDEN = set("/\\#?%:")  # characters W&B refuses in a project name
PROJECT_NAME_LIMIT = 128  # characters, W&B's limit
ENTITY_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a W&B user or team name


def validate_wandb(mode: str, project: Any, entity: Any = None) -> str:
    """``logger.mode`` must be one of ``MODES``, and ``logger.project`` and ``logger.entity`` names W&B accepts
    (checked here, before anything is written: W&B refuses a bad one only once the run has started, or, offline,
    when the run is synced). A disabled logger reads neither."""
    require_choice("logger.mode", mode, MODES)
    if mode == "disabled":
        return mode
    for option, value in (("logger.project", project), ("logger.entity", entity)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # Hydra reads an unquoted 2024 so
            raise ConfigError(f"{option}={value!r} is a number, not a name; quote it: {option}=\"'{value}'\"")
    if not isinstance(project, str) or not project or PROJECT_NAME_FORBIDDEN & set(project):
        raise ConfigError(
            f"logger.project={project!r} is invalid; expected a name without any of / \\ # ? % :"
        )
    if len(project) > PROJECT_NAME_LIMIT:
        raise ConfigError(f"logger.project={project!r} is invalid; expected at most {PROJECT_NAME_LIMIT} characters")
    if entity is not None and not (isinstance(entity, str) and ENTITY_NAME.fullmatch(entity)):
        raise ConfigError(
            f"logger.entity={entity!r} is invalid; expected null (your default entity) or a W&B user or team name "
            "of letters, digits, - and _"
        )
    return mode


class WandbLogger(Logger):
    """A W&B run in ``output_dir`` (offline by default: no account needed; ``wandb sync`` uploads later).

    The run id is stable per output directory. Online, a resumed run continues the same W&B run. Offline, W&B
    cannot resume (each start opens a new ``offline-run-*`` folder, and ``wandb sync`` of several folders of
    one id keeps one of them), so a resumed offline run logs its ``history`` again into the new folder and
    removes the folders it supersedes: one folder per run, holding every epoch up to the checkpoint.
    """

    name: ClassVar[str] = "wandb"
    defaults: ClassVar[Mapping[str, Any]] = {"mode": "offline", "project": "rigl-repro", "entity": None}

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        validate_wandb(options["mode"], options["project"], options["entity"])

    def __init__(
        self,
        mode: str,
        project: str,
        entity: str | None,
        config: Mapping[str, Any],
        output_dir: Path,
        history: Sequence[Mapping[str, Any]] = (),
        labels: RunLabels | None = None,
    ):
        validate_wandb(mode, project, entity)
        self.run = None
        self.labels = labels or RunLabels()
        if mode == "disabled":
            return
        import wandb  # imported only when used: it is slow to import

        run_id = hashlib.sha1(output_dir.resolve().as_posix().encode()).hexdigest()[:16]
        superseded = sorted((output_dir / "wandb").glob(f"offline-run-*-{run_id}*")) if mode == "offline" else []
        try:
            self.run = wandb.init(
                mode=mode,
                project=project,
                entity=entity,
                config={**config, **self.labels.config},
                dir=str(output_dir),
                name=self.labels.name or output_dir.name,
                group=self.labels.group,
                job_type=self.labels.job_type,
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
        if mode == "offline":
            for entry in history:
                self.log(entry, step=entry["step"])
            for folder in superseded:
                shutil.rmtree(folder, ignore_errors=True)
            if superseded:
                log.info("W&B: %d epochs logged again into %s, which replaces %s", len(history),
                         Path(self.run.dir).parent.name, ", ".join(folder.name for folder in superseded))

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log ``metrics`` at ``step``. Per-layer densities (``layer_densities``) become ``density/<layer>``;
        each topology update of ``mask_updates`` is logged at its own step as ``mask/replaced``,
        ``mask/replaced/<layer>`` and ``mask/exploration``."""
        if self.run is None:
            return
        layers = list(metrics.get("layer_densities", {}))
        for update in metrics.get("mask_updates", ()):
            values = {"mask/replaced": update["replaced"], "mask/exploration": update["exploration"]}
            values.update({f"mask/replaced/{name}": value for name, value in zip(layers, update["layer_replaced"])})
            self.run.log(values, step=update["step"])
        flat = {key: value for key, value in metrics.items() if key not in ("layer_densities", "mask_updates")}
        flat.update({f"density/{name}": value for name, value in metrics.get("layer_densities", {}).items()})
        if "exploration" in flat:
            flat["mask/exploration"] = flat.pop("exploration")
        self.run.log(flat, step=step)

    def summarize(self, summary: Mapping[str, Any]) -> None:
        """Store a run's final numbers in the W&B run summary (what ``reporting.wandb_summaries`` reads), and
        the objectives its labels name as ``objective/<name>``."""
        if self.run is not None:
            values = run_objectives(summary) if self.labels.objectives else {}
            objectives = {f"objective/{name}": values[name] for name in self.labels.objectives}
            self.run.summary.update({**summary, **objectives})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
