"""``logger=wandb`` (the default): Weights & Biases, ``logger.mode`` online, offline or disabled.

W&B itself is imported only when a run starts one: ``logger.mode=disabled`` never imports it, so machines
without its wheel (the GPU check's) still train, and nothing is written, anywhere. ``WANDB_MODE=disabled`` (or
``WANDB_DISABLED=true``) in the environment disables it the same way whatever ``logger.mode`` says, and
``WANDB_MODE=offline`` keeps an online run offline: W&B's own precedence lets ``wandb.init(mode=...)`` win over
the environment, so an offline folder used to be written under ``WANDB_MODE=disabled``. The environment can only
make a run more private, never upload what the config keeps offline.

A run's files are in its run folder: ``<run folder>/wandb/offline-run-<time>-<id>/`` (offline; ``wandb sync``
uploads it) or ``run-<time>-<id>/`` (online), and ``<run folder>/wandb/run_id``, the run's W&B id. (W&B's
service also keeps its own debug logs in ``$WANDB_CACHE_DIR``, by default ``~/.cache/wandb/logs``.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from rigl_repro.errors import ConfigError, require_choice
from rigl_repro.loggers.base import Logger, RunLabels
from rigl_repro.loggers.labels import run_labels
from rigl_repro.results import atomic_file
from rigl_repro.sweeps.objectives import run_objectives

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
INIT_TIMEOUT_S = 60  # W&B's own default is 90 s; online runs without a network fail after this


PROJECT_NAME_FORBIDDEN = set("/\\#?%:")  # characters W&B refuses in a project name
PROJECT_NAME_LIMIT = 128  # characters, W&B's limit
ENTITY_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a W&B user or team name
RUN_ID_FILE = "run_id"  # in <run folder>/wandb/: the run's W&B id, so that a resumed run stays one W&B run
RUN_ID = re.compile(r"[a-z0-9]{8,64}")  # what this logger writes (and W&B takes)
PRIVACY = {"online": 0, "offline": 1, "disabled": 2}  # a mode may be made more private, never less
ENVIRONMENT_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
                     "disabled": "disabled"}  # WANDB_MODE's values, as W&B reads them  # fmt: skip


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


def effective_mode(mode: str, environ: Mapping[str, str]) -> str:
    """The mode a run uses: ``logger.mode`` or, if more private, the environment's (``WANDB_MODE``, or
    ``WANDB_DISABLED=true``), so that a machine or job that says "no W&B" is obeyed whatever the config says
    (``wandb.init(mode=...)`` would override the environment)."""
    wanted = ENVIRONMENT_MODES.get(environ.get("WANDB_MODE", "").strip().lower(), mode)
    if environ.get("WANDB_DISABLED", "").strip().lower() in ("true", "1", "yes"):
        wanted = "disabled"
    return max(mode, wanted, key=PRIVACY.__getitem__)


def legacy_run_id(output_dir: Path) -> str:
    """The id runs started before ``RUN_ID_FILE`` existed have: a hash of the run folder's path."""
    return hashlib.sha1(output_dir.resolve().as_posix().encode()).hexdigest()[:16]


def run_id(output_dir: Path, resuming: bool) -> str:
    """The W&B id of the run in ``output_dir``, kept in ``wandb/run_id`` there, so that a resumed run (one that
    goes on from a checkpoint: ``resuming``) continues its W&B run. A run that starts from its first epoch
    gets a new random id, which is stored: a run trained afresh in a remade folder, in the same path on
    another machine, or with ``checkpoint.resume=false``, is a new W&B run (an id hashed from the folder's
    path made it continue the old one, whose later steps W&B kept and the new run's earlier ones it refused).
    A run resumed from a checkpoint written before the file existed keeps the id it had (``legacy_run_id``);
    one whose file is unreadable or invalid gets a new id."""
    path = output_dir / "wandb" / RUN_ID_FILE
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = None
    except (OSError, UnicodeDecodeError):
        stored = ""
    if resuming and stored is not None and RUN_ID.fullmatch(stored):
        return stored
    if resuming and stored is None:
        chosen = legacy_run_id(output_dir)
    else:
        if resuming:
            log.warning("W&B: %s holds no valid run id; the resumed run is a new W&B run", path)
        chosen = secrets.token_hex(8)
    with atomic_file(path) as temporary:
        temporary.write_text(chosen + "\n", encoding="utf-8")
    return chosen


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every nested mapping a dict (W&B's summary takes dicts, not other mappings)."""
    return {key: plain(value) if isinstance(value, Mapping) else value for key, value in values.items()}


class WandbLogger(Logger):
    """A W&B run in ``output_dir`` (offline by default: no account needed; ``wandb sync`` uploads later),
    named, grouped, tagged and typed by ``labels`` (by default the run's own: ``run_labels(config)``).

    The run id is kept in the run folder (``run_id``). Online, a run resumed from its checkpoint continues the
    same W&B run. Offline, W&B cannot resume (each start opens a new ``offline-run-*`` folder, and ``wandb
    sync`` of several folders of one id keeps one of them), so a resumed offline run logs its ``history`` again
    into the new folder and removes the folders it supersedes: one folder per run, holding every epoch up to
    the checkpoint.
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
        self.labels = run_labels(config) if labels is None else labels
        chosen = effective_mode(mode, os.environ)
        if chosen == "disabled":  # nothing imported, nothing written
            if mode != chosen:
                log.info("W&B disabled by the environment (WANDB_MODE / WANDB_DISABLED): nothing is logged")
            return
        if mode != chosen:
            log.info("W&B kept %s by WANDB_MODE in the environment (logger.mode=%s)", chosen, mode)
        mode = chosen
        import wandb  # imported only when used: it is slow to import

        # The folder is one run's: every offline folder in it is an earlier start of this run (or of a run
        # trained afresh here), which this one replaces.
        superseded = sorted((output_dir / "wandb").glob("offline-run-*")) if mode == "offline" else []
        identifier = run_id(output_dir, resuming=bool(history))
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
                tags=list(self.labels.tags),
                id=identifier,
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
        """Store a run's final numbers in the W&B run summary, every key as received, so under the names of
        ``summary.json``; dicts (``flops``, ``layer_densities``) stay nested, as in ``summary.json`` and as
        ``reporting.wandb_summaries`` reads them (W&B shows them as ``flops.train_relative``). The objectives
        the labels name are added as ``objective/<name>``."""
        if self.run is not None:
            values = run_objectives(summary) if self.labels.objectives else {}
            objectives = {f"objective/{name}": values[name] for name in self.labels.objectives}
            self.run.summary.update({**plain(summary), **objectives})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
