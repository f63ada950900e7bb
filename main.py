"""Train one configured run (or a sweep with -m): ``python main.py dataset=cifar10 masking=rigl masking.density=0.1``.

Returns the run's objectives (``rigl_repro.sweeps.objectives``: validation accuracy, FLOPs relative to dense,
density, wall time) for the Optuna sweeper; with ``trial_seeds`` (a list of distinct seeds) it trains every
listed seed (in ``seed=N`` subfolders) and returns their means. In an Optuna trial, each run reports its
validation accuracy after every epoch to the study, whose pruner may stop the trial (``rigl_repro.sweeps.trial``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from rigl_repro.run.openmp import choose_wait_policy

# OpenMP reads how its idle threads wait once, when torch loads it: chosen by the load now, before any import
# of torch (rigl_repro/run/openmp.py); OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment is kept.
choose_wait_policy(os.environ)

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import rigl_repro.config  # noqa: F401  (registers the resolvers conf/config.yaml uses)
from rigl_repro.errors import ConfigError, TrainingDiverged
from rigl_repro.launchers import stop_with_sweeper
from rigl_repro.run.config import signal_numbers
from rigl_repro.sweeps.objectives import mean_objectives, run_objectives
from rigl_repro.sweeps.seeds import run_trial_seeds
from rigl_repro.sweeps.trial import TrialLink, TrialReport, clear_pruned, mark_pruned
from rigl_repro.training.preemption import Stopped
from rigl_repro.training.run_folder import remove_if_unused
from rigl_repro.training.session import run
from rigl_repro.training.summary import summary_line
from rigl_repro.training.trainer import StoppedEarly

log = logging.getLogger("main")


def train_one(
    cfg: DictConfig, output_dir: Path, report: TrialReport | None, last: bool = True
) -> dict[str, float | None]:
    # In a sweep, a run folder in use by another process (the same run, started by a sweep that was killed
    # and restarted, or by a second sweep) is waited for, and its result reused.
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    if report is None:
        summary = run(cfg, output_dir, wait_for_folder=sweeping)
    else:
        clear_pruned(output_dir)
        try:
            summary = run(cfg, output_dir, wait_for_folder=sweeping, after_epoch=report.after_epoch,
                          labels=report.link.labels(OmegaConf.to_container(cfg, resolve=True)))  # fmt: skip
        except StoppedEarly as stopped:
            import optuna

            mark_pruned(output_dir, report.link, stopped.epoch, stopped.epochs)
            log.info("trial %d pruned by its study's pruner: %s %s", report.link.number, output_dir, stopped)
            raise optuna.TrialPruned(f"seed {cfg.seed} {stopped}") from None
        if report.seed_done(summary["history"], more=not last):  # judged between seeds too
            import optuna

            log.info("trial %d pruned by its study's pruner after seed %s", report.link.number, cfg.seed)
            raise optuna.TrialPruned(f"stopped after seed {cfg.seed}, before the trial's next seeds")
    log.info("done: %s", summary_line(summary, output_dir))
    return run_objectives(summary)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, float | None] | None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        # A worker of a parallel sweep ends with its sweeper, as a signal the run checkpoints on would end it.
        stop_with_sweeper((signal_numbers(cfg.checkpoint.on_signals) or [signal.SIGTERM])[0])
        seeds = run_trial_seeds(cfg)  # refused before the first seed trains, not after it
        link = TrialLink.from_environment(os.environ)
        report = None if link is None else TrialReport(link)
        if seeds is None:
            return train_one(cfg, output_dir, report)
        runs = [train_one(OmegaConf.merge(cfg, {"seed": seed}), output_dir / f"seed={seed}", report, seed == seeds[-1])
                for seed in seeds]  # fmt: skip
        return mean_objectives(runs)
    except (ConfigError, TrainingDiverged) as error:
        sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
        if sweeping:  # the sweep says each reason once, for all the runs it stopped; the job's main.log keeps it
            from rigl_repro.sweeps.grid import log_in_job_files  # lazy: after Hydra's plugin scan (sweeps/__init__)

            log_in_job_files(log, f"error: {error}")
        else:
            log.error("error: %s", error)
        if not isinstance(error, TrainingDiverged):  # a refused run leaves nothing behind
            remove_if_unused(output_dir, Path(cfg.output_root))
        if sweeping:
            # A sweep goes on: Optuna records a failed trial; a grid runs its other jobs, then exits non-zero.
            raise
        sys.exit(3 if isinstance(error, TrainingDiverged) else 2)
    except Stopped as stopped:  # told to stop, checkpointed, and the signal's own handler let the process go on
        log.warning("%s", stopped)
        if HydraConfig.get().mode == RunMode.MULTIRUN and stopped.exit_code == 1:
            raise  # the launcher's signal (SLURM's warning): the sweep goes on, the job is requeued
        sys.exit(stopped.exit_code)  # Ctrl-C or kill ends a sweep too, as it would end any program


if __name__ == "__main__":
    problem = rigl_repro.config.check_command_line(sys.argv[1:])  # Hydra would print many lines for it
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (building, testing, a sweeper between jobs)
        print("interrupted; a run resumes from its last checkpoint: run the same command", file=sys.stderr)
        sys.exit(130)
