"""Hydra's basic (grid) sweeper, with the single run's error handling: a run refused for a bad value, or
stopped because its loss diverged, has logged its one-line error; the grid's other runs still run, and the
sweep ends with one line per failed run and exit code 2 (3 if every failure diverged), not a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig
from submitit.core.utils import FailedJobError

from rigl_repro.errors import ConfigError, TrainingDiverged
from rigl_repro.launchers import announce_sweeper

log = logging.getLogger(__name__)

RUN_FAILURES = (ConfigError, TrainingDiverged)  # the failures a run reports in one line itself


def take_run_failures(results: Sequence[JobReturn]) -> list[tuple[str, Exception]]:
    """(overrides, error) of the jobs that ended with a run failure, which the run has already logged in one
    line; those results are marked done (value None) so that Hydra does not print them again with a
    traceback. Other errors are left in place to raise."""
    failures = []
    for result in results:
        error = result._return_value if result.status == JobStatus.FAILED else None
        if isinstance(error, RUN_FAILURES):
            failures.append((" ".join(result.overrides or ()), error))
            result.status, result._return_value = JobStatus.COMPLETED, None
    return failures


def exit_after_failures(failures: Sequence[tuple[str, Exception | str]], total: int) -> None:
    """Log one line per failed run and leave with exit code 2 (3 when every failure is a diverged loss)."""
    lines = "\n".join(f"  {overrides}: {error}" for overrides, error in failures)
    log.error("%d of %d runs failed:\n%s", len(failures), total, lines)
    diverged = bool(failures) and all(isinstance(error, TrainingDiverged) for _, error in failures)
    raise SystemExit(3 if diverged else 2)  # not an Exception: Hydra prints no traceback for it


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

    def sweep(self, arguments: list[str]) -> Any:
        assert self.launcher is not None
        failures: list[tuple[str, Exception]] = []
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
            exit_after_failures(failures, launched)
        return returns
