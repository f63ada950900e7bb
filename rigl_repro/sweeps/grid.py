"""Hydra's basic (grid) sweeper, with the single run's error handling: a run refused once started (its data
missing) or stopped because its loss diverged has logged its one-line error (``log_in_job_files``: to its
``main.log``, not the console); the grid's other runs still run, and the sweep ends with each reason said once,
with the runs it stopped, and exit code 2 (3 if every failure diverged), not a traceback. A grid whose runs
cannot compose, or that has runs a single run would refuse for a bad value, is refused before any run starts
(``rigl_repro.config.check_command_line``, from ``grid_jobs``: the jobs this sweeper launches)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig
from submitit.core.utils import FailedJobError

from rigl_repro.config import composition_part
from rigl_repro.errors import ConfigError, TrainingDiverged
from rigl_repro.launchers import announce_sweeper

log = logging.getLogger(__name__)

RUN_FAILURES = (ConfigError, TrainingDiverged)  # the failures a run reports in one line itself
RUNS_NAMED = 3  # runs listed by their overrides for one reason; the others are counted


def grid_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """Each job's overrides, in launch order, of a grid over ``overrides`` (the sweep's ``hydra.sweeper.params``
    as ``key=value`` first, then the command line's): Hydra's own parsing and cartesian product, as the sweeper
    runs it, so that a check of these jobs is a check of the sweep. A sweep the grid cannot take (``interval``)
    raises Hydra's error; a ``glob`` needs Hydra's config loader and raises too."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def take_run_failures(results: Sequence[JobReturn]) -> list[tuple[list[str], Exception]]:
    """(overrides, error) of the jobs that ended with a run failure, which the run has already recorded in one
    line; those results are marked done (value None) so that Hydra does not print them again with a
    traceback. Other errors are left in place to raise."""
    failures = []
    for result in results:
        error = result._return_value if result.status == JobStatus.FAILED else None
        if isinstance(error, RUN_FAILURES):
            failures.append((list(result.overrides or ()), error))
            result.status, result._return_value = JobStatus.COMPLETED, None
    return failures


def named_runs(labels: Sequence[str]) -> str:
    """A few runs by their overrides, the rest counted: ``a=1; a=2; a=3 and 5 more``."""
    shown = "; ".join(labels[:RUNS_NAMED])
    return shown if len(labels) <= RUNS_NAMED else f"{shown} and {len(labels) - RUNS_NAMED} more"


def failure_report(failures: Sequence[tuple[str, Exception | str]], total: int) -> str:
    """The failed runs of a sweep, each reason once: ``error: 6 of 6 runs failed: <reason>`` when they share
    one (a missing dataset stops every run alike; its line is long), else one line per reason naming its runs.
    A run is named by its overrides (``overrides``, a string per failure)."""
    reasons: dict[str, list[str]] = {}
    for overrides, error in failures:
        reasons.setdefault(str(error).strip() or type(error).__name__, []).append(overrides)
    head = f"error: {len(failures)} of {total} run{'' if total == 1 else 's'} failed"
    if len(reasons) == 1:
        ((reason, runs),) = reasons.items()
        return f"{head}: {reason}" if len(runs) == total else f"{head} ({named_runs(runs)}): {reason}"
    return "\n".join([f"{head}:", *(f"  {named_runs(runs)}: {reason}" for reason, runs in reasons.items())])


def exit_after_failures(failures: Sequence[tuple[str, Exception | str]], total: int) -> None:
    """Log the failed runs, each reason once (``failure_report``), and leave with exit code 2 (3 when every
    failure is a diverged loss)."""
    log.error("%s", failure_report(failures, total))
    diverged = bool(failures) and all(isinstance(error, TrainingDiverged) for _, error in failures)
    raise SystemExit(3 if diverged else 2)  # not an Exception: Hydra prints no traceback for it


def run_label(overrides: Sequence[str], shared: Collection[str]) -> str:
    """A job's overrides less those every job of its sweep has: what tells it from the others."""
    return " ".join(item for item in overrides if item not in shared) or " ".join(overrides)


def log_in_job_files(logger: logging.Logger, message: str) -> None:
    """Record ``message`` as an error in the job's log files (Hydra's ``main.log`` in the run folder) and not on
    the console: in a sweep the sweeper says each failure once for all the runs it stopped (``failure_report``,
    or the Optuna sweeper's "trial N failed"), so six runs stopped by one missing dataset print its line once.
    For ``main.py``'s jobs of a sweep."""
    record = logger.makeRecord(logger.name, logging.ERROR, "(job)", 0, message, (), None)
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)
        current = current.parent if current.propagate else None


def launch_or_exit(
    launch: Callable[..., Sequence[JobReturn]], job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    """The launcher's results for these jobs; a scheduler that refuses the submission (sbatch's own error:
    no cluster reachable, an unknown partition) ends the sweep with that one line and exit code 2. Its jobs
    never started, so running the same command again once the scheduler takes them loses nothing."""
    try:
        return launch(job_overrides, initial_job_idx=initial_job_idx)
    except FailedJobError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(error).__name__
        runs = f"{len(job_overrides)} run{'' if len(job_overrides) == 1 else 's'}"
        log.error("error: the launcher could not submit %s: %s", runs, reason)
        raise SystemExit(2) from None  # not an Exception: Hydra prints no traceback for it


class GridSweeperBase(BasicSweeper):
    """``-m`` over the cartesian product of the overrides, one batch after another (Hydra's own); the
    default sweeper (``hydra.sweeper._target_`` in conf/config.yaml)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        announce_sweeper()  # runs in worker processes stop when this process dies

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose one job of each kind of the batch before launching it, as Hydra composes every job to fail
        early: jobs that differ only in the values they set on existing keys compose alike
        (``rigl_repro.config.composition_part``). Hydra's way took 82 s for sweep_lr's 192 smoke jobs."""
        parser = OverridesParser.create()
        kinds: dict[tuple[str, ...], Sequence[str]] = {}
        for job in batch:
            kinds.setdefault(tuple(composition_part(item) for item in parser.parse_overrides(list(job))), job)
        super().validate_batch_is_legal(list(kinds.values()))

    def sweep(self, arguments: list[str]) -> Any:
        assert self.launcher is not None
        failures: list[tuple[list[str], Exception]] = []
        launched = 0
        launch = self.launcher.launch

        def launch_and_collect(job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            nonlocal launched
            results = launch_or_exit(launch, job_overrides, initial_job_idx)
            launched += len(results)
            failures.extend(take_run_failures(results))
            return results

        self.launcher.launch = launch_and_collect  # type: ignore[method-assign]
        try:
            returns = super().sweep(arguments)
        finally:
            self.launcher.launch = launch  # type: ignore[method-assign]
        if failures:
            jobs = [set(job) for batch in self.overrides or () for job in batch]
            shared = set.intersection(*jobs) if jobs else set()
            exit_after_failures([(run_label(overrides, shared), error) for overrides, error in failures], launched)
        return returns
