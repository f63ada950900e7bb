"""Training a configured run in its folder: start this process's part, reuse a finished run, lock the folder,
fit, and turn another process's failure into one line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rigl_repro.loggers import RunLabels
from rigl_repro.results import read_summary
from rigl_repro.run.config import RunConfig, resolve_device
from rigl_repro.run.folders import IDENTITY_FILE
from rigl_repro.run.identity import identity_digest
from rigl_repro.training.checkpoint import CheckpointError
from rigl_repro.training.distributed import start_processes
from rigl_repro.training.processes import SingleProcess
from rigl_repro.training.trainer import AfterEpoch, Trainer

log = logging.getLogger(__name__)


def run(
    cfg: DictConfig | RunConfig,
    output_dir: Path,
    wait_for_folder: bool = False,
    after_epoch: AfterEpoch | None = None,
    labels: RunLabels | None = None,
) -> dict[str, Any]:
    """Train the configured run in ``output_dir``, or return its summary if it has already finished there.
    If another process trains in the folder, refuse, or with ``wait_for_folder`` (sweeps) wait for it and
    reuse its result. Under a launcher of several processes, this process trains its share of the run.
    ``after_epoch`` (``Trainer``) may stop it early; ``labels`` name it for experiment trackers."""
    config = cfg if isinstance(cfg, RunConfig) else RunConfig.from_hydra(cfg)  # every option checked, once
    device = resolve_device(str(config.options.device))
    processes = start_processes(config.distributed, device, config.train.batch_size)
    failed = True
    try:
        summary = train_or_reuse(config, Path(output_dir), processes, wait_for_folder, after_epoch, labels)
        failed = False
        return summary
    except RuntimeError as error:
        lost = processes.lost_peer(error)
        if lost is None:
            raise
        raise lost from None
    finally:
        processes.close(failed)


def train_or_reuse(
    config: RunConfig,
    output_dir: Path,
    processes: SingleProcess,
    wait: bool,
    after_epoch: AfterEpoch | None = None,
    labels: RunLabels | None = None,
) -> dict[str, Any]:
    finished = read_summary(output_dir)
    processes.require_same(finished is None, f"the processes of this run see different files in {output_dir}; "
                           "put output_root on a file system every node shares")  # fmt: skip
    if finished is None:
        # validates everything before the folder is touched
        trainer = Trainer(config, output_dir, processes, after_epoch, labels)
        with processes.folder_lock(output_dir, wait):
            finished = read_summary(output_dir)  # finished by the process that held the lock
            if finished is None:
                # the folder is this run's from now on: the next command that composes it finds it here
                processes.write_json(output_dir / IDENTITY_FILE, {"digest": identity_digest(config.resolved),
                                                                  "identity": config.identity()})  # fmt: skip
                return trainer.fit()
    changed = sorted({option.split(".")[0] for option, _, _ in config.changes_from(finished["config"])})
    if changed:
        raise CheckpointError(
            f"{output_dir} holds a finished run of a different configuration (differs in: {', '.join(changed)}); "
            "use another output directory (hydra.run.dir=...)"
        )
    log.info("%s already holds this finished run; reusing its summary (delete the folder to train again)", output_dir)
    return finished
