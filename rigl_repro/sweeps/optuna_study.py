"""A Hydra sweeper around Optuna's ask-and-tell that resumes a stored study exactly.

Why not hydra-optuna-sweeper: its last release (1.3) pins optuna < 3, and on a restart it asks ``n_trials``
more trials, replays its seeded sampler's first proposals and leaves the interrupted trial RUNNING forever.
Here:

- ``n_trials`` is the study's total: a restarted sweep runs only the trials still missing.
- Every trial the sweeper asks for records a heartbeat in the storage while it runs. At start-up, RUNNING
  trials whose heartbeat stopped (their sweeper was killed) are failed and queued again with the same
  parameters, so their run folders resume from their checkpoints (or are reused when they had finished).
- The sampler is seeded per proposal (seed + number of proposals made before), so a resumed sweep proposes
  what an uninterrupted one would have, and never replays the start-up points. A proposal is complete once
  its overrides are recorded: a trial whose sweeper died while it was still being proposed (some of its
  parameters sampled, none run) is not queued again but proposed afresh, with the same seed.

The search space uses the syntax of Hydra's Optuna sweeper (and the report's code): ``interval(a, b)`` is a
uniform float (``tag(log, interval(a, b))`` log-uniform; Hydra reads both ends as floats), ``range(a, b,
step=s)`` the integers a, a + s, ..., b (both ends included, as hydra-optuna-sweeper 1.3 had it),
``choice(...)`` a categorical; any other value is passed to every trial unchanged. Seeds are never searched
(``trial_seeds`` gives every trial the same ones, ``rigl_repro.sweeps.seeds``).

A stored study keeps the direction, search space and fixed overrides it was created for: a command asking for
others is refused before it touches the study (``rigl_repro.sweeps.agreement``), and so is a storage that is
not an Optuna one (``rigl_repro.sweeps.storage``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from rigl_repro.config import folder_name
from rigl_repro.errors import ConfigError, require_choice, require_in_range, require_int
from rigl_repro.launchers import announce_sweeper, launch_from_environment
from rigl_repro.results import OutputError, atomic_file
from rigl_repro.sweeps.agreement import disagreement, objective, record, settings, stored_settings
from rigl_repro.sweeps.grid import RUN_FAILURES, exit_after_failures, launch_or_exit
from rigl_repro.sweeps.seeds import check_trial_seeds, refuse_searched_seeds
from rigl_repro.sweeps.storage import check_storage, sqlite_path, storage_errors

log = logging.getLogger(__name__)


def distribution_of(override: Override) -> BaseDistribution | None:
    """The Optuna distribution a sweep override describes, or None for a plain value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, Glob):
        raise ConfigError(f"{override.input_line}: Optuna cannot sample a glob; use interval, range or choice")
    if getattr(value, "shuffle", False):  # a different order at every start would break a resumed study
        raise ConfigError(f"{override.input_line}: Optuna samples its own order; drop shuffle()")
    if override.is_choice_sweep():
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, RangeSweep):
        if any(isinstance(bound, float) for bound in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(value.start, value.end, log=log_scale)
    raise ConfigError(f"{override.input_line} is a sweep Optuna cannot sample; use interval, range or choice")


def search_space(overrides: Sequence[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """Split ``key=value`` overrides into Optuna distributions (sweeps) and fixed ``key: value`` overrides.
    A later override of a key replaces an earlier one (the command line after the config's ``params``); a seed
    left in the search space is refused."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    typed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        distribution = distribution_of(override)
        if distribution is None:
            fixed[key] = override.get_value_element_as_str()
        else:
            space[key], typed[key] = distribution, override.input_line
    refuse_searched_seeds({key: typed[key] for key in space})
    return space, fixed


def retried_trials(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the trials that were queued again after their sweeper died."""
    return {number for trial in trials for number in trial.system_attrs.get("retry_history", ())}


def is_proposed(trial: FrozenTrial) -> bool:
    """Whether the sweeper finished proposing the trial: it records the trial's overrides last."""
    return "overrides" in trial.user_attrs


def finished_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count towards ``n_trials``: complete, pruned, or failed by their own run (not the
    stale ones that were queued again, nor those whose sweeper died before it finished proposing them)."""
    retried = retried_trials(trials)
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [
        t for t in trials
        if t.state in done or (t.state == TrialState.FAIL and t.number not in retried and is_proposed(t))
    ]  # fmt: skip


def proposals_made(trials: Sequence[FrozenTrial]) -> int:
    """Proposals the sampler completed (the re-queued copies of stale trials are not proposals)."""
    return sum(is_proposed(trial) and "retry_history" not in trial.system_attrs for trial in trials)


def queue_again_if_proposed(study: optuna.Study, trial: FrozenTrial) -> None:
    """Stale-trial callback: Optuna's retry (a WAITING copy with the same parameters) for a trial whose
    proposal was complete. One whose sweeper died mid-proposal never ran and has only some of its parameters:
    it stays failed, and the sampler proposes it again as an uninterrupted sweep would have."""
    if is_proposed(trial):
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)


class HeartbeatStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, recording a trial's first heartbeat the moment it starts running. Optuna only
    calls a RUNNING trial stale once it has a heartbeat, so a sweeper killed between ``ask`` and its first
    beat would otherwise leave a trial RUNNING for ever."""

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        # The method Optuna's cache layer (which wraps every RDB storage) calls to create a trial.
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial._trial_id)
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:  # a queued trial taken by ``ask``
            self.record_heartbeat(trial_id)
        return changed


@contextmanager
def heartbeats(storage: optuna.storages.RDBStorage, trial_ids: Sequence[int], interval: float) -> Iterator[None]:
    """Record the trials' heartbeats every ``interval`` seconds while the block runs (their jobs train)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in trial_ids:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception as error:  # e.g. a busy database: try again at the next beat
                    log.warning("heartbeat of trial %d not recorded (%s); retrying", trial_id, error)

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class OptunaStudySweeperBase(Sweeper):
    """Hydra sweeper: ``n_trials`` trials of one stored Optuna study, asked ``n_jobs`` at a time and run by
    the configured launcher. Registered for Hydra in ``hydra_plugins/rigl_repro_sweeper``."""

    def __init__(
        self,
        study_name: str,
        storage: str,
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        sampler: dict[str, Any] | None = None,
        heartbeat_interval: int = 20,
        grace_period: int = 60,
        params: dict[str, str] | None = None,
    ) -> None:
        # Stored as given and checked when the sweep starts, where a bad value can be one line, not a traceback.
        self.study_name, self.storage_url, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        sampler = dict(sampler or {})
        self.seed, self.n_startup_trials = sampler.get("seed"), sampler.get("n_startup_trials", 10)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        announce_sweeper()  # trials run in worker processes stop when this process dies

    def validate_options(self) -> None:
        """Each ``hydra.sweeper`` option, in one line naming it if it is nonsense."""
        require_choice("hydra.sweeper.direction", self.direction, ("maximize", "minimize"))
        require_int("hydra.sweeper.n_trials", self.n_trials, 1)
        require_int("hydra.sweeper.n_jobs", self.n_jobs, 1)
        require_in_range("hydra.sweeper.max_failure_rate", self.max_failure_rate, 0.0, 1.0)
        if self.seed is not None:
            require_int("hydra.sweeper.sampler.seed", self.seed, 0, 2**31 - 1)
        require_int("hydra.sweeper.sampler.n_startup_trials", self.n_startup_trials, 0)
        require_int("hydra.sweeper.heartbeat_interval", self.heartbeat_interval, 1)
        require_int("hydra.sweeper.grace_period", self.grace_period, self.heartbeat_interval + 1)
        processes = launch_from_environment(os.environ).world_size
        if processes > 1:  # every process would ask the study for trials of its own
            raise ConfigError(
                f"an Optuna sweep cannot be started by {processes} processes (torchrun); start it once, and give "
                "each trial several processes through its launcher (hydra.launcher.tasks_per_node=N on SLURM)"
            )

    def open_storage(self) -> HeartbeatStorage:
        """The study's storage, once it is known to be an Optuna storage (or a new one); else a ConfigError."""
        check_storage(self.storage_url)
        database = sqlite_path(self.storage_url)
        with storage_errors(self.storage_url):
            if database is not None:
                database.parent.mkdir(parents=True, exist_ok=True)
            return HeartbeatStorage(
                self.storage_url,
                heartbeat_interval=self.heartbeat_interval,
                grace_period=self.grace_period,
                heartbeat_stale_trial_callback=queue_again_if_proposed,
            )

    def open_study(
        self, storage: HeartbeatStorage, space: dict[str, BaseDistribution], fixed: dict[str, str]
    ) -> optuna.Study:
        """The stored study, refused in one line (and left untouched) if it was created for another direction,
        search space or fixed overrides; created, with a record of them, if there is none. A study stored
        before they were recorded adopts this command's."""
        asked = settings(self.direction, space, fixed)
        with storage_errors(self.storage_url):
            try:
                study, created = optuna.load_study(study_name=self.study_name, storage=storage), False
            except KeyError:  # no such study yet (load_if_exists: another sweeper may be creating it now)
                study, created = optuna.create_study(
                    study_name=self.study_name, storage=storage, direction=self.direction, load_if_exists=True
                ), True  # fmt: skip
            directions = ", ".join(direction.name.lower() for direction in study.directions)
            stored = stored_settings(directions, study.user_attrs)
            unrecorded = stored is None  # new, or stored before the record: it keeps only its direction
            if stored is None:
                stored = settings(directions, space, fixed)
            problem = disagreement(self.study_name, self.storage_url, stored, asked)
            if problem:
                raise ConfigError(problem)
            if unrecorded:
                if not created:
                    log.info("study %s in %s has no record of its search space and fixed overrides; recording "
                             "this command's", self.study_name, self.storage_url)  # fmt: skip
                for key, value in record(space, fixed).items():
                    study.set_user_attr(key, value)
        return study

    def propose(self, study: optuna.Study, space: dict[str, BaseDistribution], fixed: dict[str, str]) -> optuna.Trial:
        """The next trial: a queued copy of an interrupted one if there is any, else the sampler's proposal,
        seeded by the number of proposals before it. Its overrides are recorded last: they mark it complete."""
        made = proposals_made(study.get_trials(deepcopy=False))
        seed = None if self.seed is None else int(self.seed) + made
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        trial = study.ask(space)
        trial.set_user_attr("overrides", [f"{key}={value}" for key, value in {**trial.params, **fixed}.items()])
        return trial

    def requeue_stale_trials(self, study: optuna.Study) -> None:
        """Fail and queue again the RUNNING trials of a sweeper that died; wait up to one grace period for
        the heartbeats of a sweeper just killed to go stale (trials still beating belong to a live one)."""
        deadline = time.monotonic() + self.grace_period + 1
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running:
            log.info(
                "study %s has %d RUNNING trial(s); waiting up to %d s for a live sweeper's heartbeat",
                self.study_name, len(running), self.grace_period,
            )  # fmt: skip
        while running:
            optuna.storages.fail_stale_trials(study)
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running or time.monotonic() > deadline:
                break
            time.sleep(1)
        trials = study.get_trials(deepcopy=False)
        requeued = [t.number for t in trials if "retry_history" in t.system_attrs]
        if requeued:
            log.info("study %s: trials interrupted earlier are queued again as %s", self.study_name, requeued)
        unfinished = [t.number for t in trials if t.state == TrialState.FAIL and not is_proposed(t)]
        if unfinished:
            log.info("study %s: trials %s were cut while being proposed; proposed again", self.study_name, unfinished)

    def sweep(self, arguments: list[str]) -> None:
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for Study.optimize: not here
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with")
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            self.run_study(arguments)

    def run_study(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        try:
            self.validate_options()
            space, fixed = search_space([*(f"{key}={value}" for key, value in self.params.items()), *arguments])
            # Seeds are never searched, so every trial trains the seeds the sweep's own config lists.
            check_trial_seeds(OmegaConf.select(self.config, "trial_seeds"))
            storage = self.open_storage()
            not_identity = self.config.hydra.job.config.override_dirname.exclude_keys
            study = self.open_study(storage, space, objective(fixed, not_identity))
        except ConfigError as error:
            log.error("error: %s", error)
            raise SystemExit(2) from None
        self.requeue_stale_trials(study)
        while True:
            study = optuna.load_study(study_name=self.study_name, storage=storage)
            optuna.storages.fail_stale_trials(study)  # another sweeper of this study may have died meanwhile
            trials = study.get_trials(deepcopy=False)
            running_elsewhere = sum(trial.state == TrialState.RUNNING for trial in trials)  # ours are all told
            to_go = self.n_trials - len(finished_trials(trials)) - running_elsewhere
            if to_go <= 0:
                break
            batch = [self.propose(study, space, fixed) for _ in range(min(self.n_jobs, to_go))]
            overrides = [tuple(trial.user_attrs["overrides"]) for trial in batch]
            with heartbeats(storage, [trial._trial_id for trial in batch], self.heartbeat_interval):
                returns = launch_or_exit(self.launcher.launch, overrides, self.job_idx)
            self.job_idx += len(returns)
            failures = self.tell(study, batch, returns)
            self.write_results(study)
            if len(failures) / len(returns) > self.max_failure_rate:
                exit_after_failures(failures, len(returns))
        self.write_results(optuna.load_study(study_name=self.study_name, storage=storage))

    def tell(self, study: optuna.Study, batch: Sequence[optuna.Trial], returns: Sequence[Any]) -> list[Any]:
        """Record the jobs' results; returns (overrides, error) of the trials that failed. A job that raised
        anything but a run failure (a bug) raises here, with its traceback."""
        failures = []
        for trial, result in zip(batch, returns):
            error = result._return_value if result.status == JobStatus.FAILED else None  # the run logged it
            if error is not None and not isinstance(error, RUN_FAILURES):
                study.tell(trial, state=TrialState.FAIL)
                result.return_value  # raises it
            try:
                value = float(result.return_value) if error is None else None
            except (TypeError, ValueError):
                value, error = None, f"the run returned {result.return_value!r}, not a number"
            try:
                study.tell(trial, value, state=TrialState.COMPLETE if value is not None else TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                log.warning("trial %d was already finished by another process; keeping its result", trial.number)
                continue
            if value is None:
                log.warning("trial %d failed: %s", trial.number, str(error).splitlines()[0] if str(error) else error)
                failures.append((" ".join(result.overrides or ()), error))
                continue
            params = ", ".join(
                f"{key}={number:.4g}" if isinstance(number, float) else f"{key}={number}"
                for key, number in trial.params.items()
            )
            done = len(finished_trials(study.get_trials(deepcopy=False)))
            log.info("trial %d (%d/%d done): %s -> %.4f", trial.number, done, self.n_trials, params, value)
        return failures

    def write_results(self, study: optuna.Study) -> None:
        """The study's state and best trial in ``<sweep dir>/optuna/<study>.yaml``, rewritten after every batch."""
        trials = study.get_trials(deepcopy=False)
        finished = finished_trials(trials)
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        results: dict[str, Any] = {
            "study": self.study_name, "storage": self.storage_url, "n_trials": self.n_trials,
            "complete": len(complete), "failed": len(finished) - len(complete),
        }  # fmt: skip
        if complete:
            best = study.best_trial
            results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
            log.info("study %s: best trial %d, %s -> %.4f", self.study_name, best.number, best.params, best.value)
        assert self.config is not None
        path = Path(self.config.hydra.sweep.dir) / "optuna" / f"{folder_name(self.study_name)}.yaml"
        try:
            with atomic_file(path) as temporary:  # a kill or a full disk never leaves half a results file
                OmegaConf.save(OmegaConf.create(results), temporary)
        except OutputError as error:  # the trials are safe in the storage; the same command writes it again
            log.error("error: %s", error)
            raise SystemExit(2) from None
