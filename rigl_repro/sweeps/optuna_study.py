"""A Hydra sweeper around Optuna's ask-and-tell, chosen by ``hydra/sweeper=optuna``, that resumes a stored study
exactly.

Why not hydra-optuna-sweeper: its last release (1.3) pins optuna < 3, and on a restart it asks ``n_trials``
more trials, replays its seeded sampler's first proposals and leaves the interrupted trial RUNNING forever.
Here:

- ``n_trials`` is the study's total: a restarted sweep runs only the trials still missing.
- Every trial the sweeper asks for records a heartbeat in the storage while it runs. At start-up, RUNNING
  trials whose heartbeat stopped (their sweeper was killed) are failed and queued again with the same
  parameters, so their run folders resume from their checkpoints (or are reused when they had finished).
- The sampler (any of Optuna's, ``rigl_repro.sweeps.algorithms``) is built and seeded per proposal (seed +
  number of proposals made before), so a resumed sweep proposes what an uninterrupted one would have, and never
  replays the start-up points. A proposal is complete once its overrides are recorded: a trial whose sweeper
  died while it was still being proposed (some of its parameters sampled, none run) is not queued again but
  proposed afresh, with the same seed.
- A study optimises one or several named numbers of its runs' summaries (``rigl_repro.sweeps.objectives``);
  with several, the Pareto front is written beside the results file, as a table and a plot.
- Each job learns its trial through ``rigl_repro.sweeps.trial``: its runs report their validation accuracy
  after every epoch to the study's storage, and the study's pruner can stop a bad trial (it ends PRUNED).
- Without a storage the study is in memory, for one sweep.

The search space uses the syntax of Hydra's Optuna sweeper (and the report's code): ``interval(a, b)`` is a
uniform float (``tag(log, interval(a, b))`` log-uniform; Hydra reads both ends as floats, ``int(interval(a,
b))`` as integers), ``range(a, b, step=s)`` the integers a, a + s, ..., b (both ends included, as
hydra-optuna-sweeper 1.3 had it), ``choice(...)`` or a comma list a categorical; any other value is passed to
every trial unchanged; ``custom_search_space`` names a function ``(cfg, trial)`` that suggests more. Seeds are
never searched (``trial_seeds`` gives every trial the same ones, ``rigl_repro.sweeps.seeds``).

A stored study keeps the directions, objectives, search space and fixed overrides it was created for: a command
asking for others is refused before it touches the study (``rigl_repro.sweeps.agreement``), and so is a storage
that is not an Optuna one (``rigl_repro.sweeps.storage``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from rigl_repro.config import folder_name
from rigl_repro.errors import ConfigError, require_in_range, require_int
from rigl_repro.launchers import announce_sweeper, launch_from_environment
from rigl_repro.results import OutputError, atomic_file
from rigl_repro.sweeps.agreement import disagreement, objective, record, settings, stored_settings
from rigl_repro.sweeps.algorithms import build_pruner, build_sampler, check_sampler, directions_of, grid_size
from rigl_repro.sweeps.grid import RUN_FAILURES, exit_after_failures, launch_or_exit
from rigl_repro.sweeps.objectives import DEFAULT_OBJECTIVES, check_objectives, trial_values
from rigl_repro.sweeps.pareto import pareto_front, write_pareto
from rigl_repro.sweeps.seeds import check_trial_seeds, refuse_searched_seeds
from rigl_repro.sweeps.storage import (
    JOURNAL_SCHEME,
    check_storage,
    journal_path,
    journal_storage,
    sqlite_path,
    storage_errors,
)
from rigl_repro.sweeps.trial import TrialLink

log = logging.getLogger(__name__)

# Keys of other Optuna sweepers' configs, and what to write instead.
REPLACED_OPTIONS = {
    "search_space": "the search space is hydra.sweeper.params (Hydra's Optuna sweeper renamed it too)",
    "seed": "the sampler's seed is hydra.sweeper.sampler.seed",
    "directions": "write hydra.sweeper.direction=[maximize,minimize] (one key, as Hydra's Optuna sweeper)",
    "objective": "write hydra.sweeper.objectives=[val_acc]",
}


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
def heartbeats(
    storage: optuna.storages.RDBStorage | None, trial_ids: Sequence[int], interval: float
) -> Iterator[None]:
    """Record the trials' heartbeats every ``interval`` seconds while the block runs (their jobs train); a
    storage without heartbeats (None: in memory, a journal file) records none."""
    if storage is None:
        yield
        return
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
    """Hydra sweeper: ``n_trials`` trials of one Optuna study, asked ``n_jobs`` at a time and run by the
    configured launcher. Registered for Hydra in ``hydra_plugins/rigl_repro_sweeper``; its options are those of
    ``conf/hydra/sweeper/optuna.yaml``, checked when the sweep starts (where a bad one is one line)."""

    def __init__(
        self,
        study_name: str | None = None,
        storage: str | None = None,
        direction: str | Sequence[str] = "maximize",
        objectives: Sequence[str] = DEFAULT_OBJECTIVES,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        sampler: dict[str, Any] | None = None,
        pruner: dict[str, Any] | None = None,
        custom_search_space: str | None = None,
        heartbeat_interval: int = 20,
        grace_period: int = 60,
        params: dict[str, str] | None = None,
        **unknown: Any,
    ) -> None:
        # Stored as given and checked when the sweep starts, where a bad value can be one line, not a traceback.
        self.study_name, self.storage_url = study_name, storage
        self.direction, self.objectives = direction, objectives
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.sampler = OmegaConf.to_container(sampler) if isinstance(sampler, DictConfig) else dict(sampler or {})
        self.pruner = OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) else dict(pruner or {})
        self.custom_search_space = custom_search_space
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.params = dict(params or {})
        self.unknown = dict(unknown)
        self.directions: list[str] = []
        self.prunes = False
        self.config: DictConfig | None = None
        self.launcher = None
        self.job_idx = 0

    @property
    def seed(self) -> int | None:
        return self.sampler.get("seed")

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        announce_sweeper()  # trials run in worker processes stop when this process dies

    def validate_options(self, space: Mapping[str, BaseDistribution]) -> None:
        """Each ``hydra.sweeper`` option, in one line naming it if it is nonsense."""
        for key in self.unknown:
            hint = REPLACED_OPTIONS.get(key, "the options are those of conf/hydra/sweeper/optuna.yaml")
            raise ConfigError(f"hydra.sweeper.{key} is not an option of the Optuna sweeper; {hint}")
        self.objectives = check_objectives(list(self.objectives))
        self.directions = directions_of(self.direction, len(self.objectives))
        require_int("hydra.sweeper.n_trials", self.n_trials, 1)
        require_int("hydra.sweeper.n_jobs", self.n_jobs, 1)
        require_in_range("hydra.sweeper.max_failure_rate", self.max_failure_rate, 0.0, 1.0)
        if self.storage_url is not None and not (isinstance(self.storage_url, str) and self.storage_url):
            raise ConfigError(f"hydra.sweeper.storage={self.storage_url!r} is invalid; expected a URL such as "
                              "sqlite:///outputs/optuna.db, or null for a study in memory")  # fmt: skip
        if self.study_name is not None and not (isinstance(self.study_name, str) and self.study_name):
            raise ConfigError(f"hydra.sweeper.study_name={self.study_name!r} is invalid; expected a name, or null")
        check_sampler(self.sampler, len(self.objectives), space)
        if self.custom_search_space is not None:
            try:
                get_method(str(self.custom_search_space))
            except Exception:  # Hydra wraps the ImportError or AttributeError in several lines
                raise ConfigError(f"hydra.sweeper.custom_search_space={self.custom_search_space} names no function; "
                                  "expected module.function(cfg, trial), importable from here") from None  # fmt: skip
        self.prunes = build_pruner(self.pruner) is not None
        if self.prunes:
            if len(self.objectives) > 1:
                raise ConfigError("hydra/sweeper/pruner: Optuna prunes studies of one objective only; use "
                                  "hydra/sweeper/pruner=none with several objectives")  # fmt: skip
            if self.storage_url is None:
                raise ConfigError(
                    "hydra/sweeper/pruner: a trial's runs report their epochs through the study's storage, and a "
                    "study in memory is out of their reach; set hydra.sweeper.storage=sqlite:///<a folder every "
                    "run can read>/optuna.db (or journal:///<folder>/optuna.log)"
                )
        require_int("hydra.sweeper.heartbeat_interval", self.heartbeat_interval, 1)
        require_int("hydra.sweeper.grace_period", self.grace_period, self.heartbeat_interval + 1)
        processes = launch_from_environment(os.environ).world_size
        if processes > 1:  # every process would ask the study for trials of its own
            raise ConfigError(
                f"an Optuna sweep cannot be started by {processes} processes (torchrun); start it once, and give "
                "each trial several processes through its launcher (hydra.launcher.tasks_per_node=N on SLURM)"
            )

    def default_study_name(self, space: Mapping[str, BaseDistribution]) -> str:
        """A study named after the sweep: its dataset, method and searched options."""
        assert self.config is not None
        parts = [OmegaConf.select(self.config, key, default=None) for key in ("dataset.name", "masking.name")]
        return "-".join(["sweep", *(str(part) for part in parts if part), ",".join(space) or "fixed"])

    def open_storage(self) -> optuna.storages.BaseStorage | None:
        """The study's storage, once it is known to be an Optuna storage (or a new one); None in memory."""
        if self.storage_url is None:
            return None
        check_storage(self.storage_url)
        with storage_errors(self.storage_url):
            journal = journal_path(self.storage_url)
            if journal is not None:
                return journal_storage(journal)
            database = sqlite_path(self.storage_url)
            if database is not None:
                database.parent.mkdir(parents=True, exist_ok=True)
            return HeartbeatStorage(
                self.storage_url,
                heartbeat_interval=self.heartbeat_interval,
                grace_period=self.grace_period,
                heartbeat_stale_trial_callback=queue_again_if_proposed,
            )

    def defining(self, fixed: Mapping[str, str]) -> dict[str, str]:
        """The fixed overrides and the custom search space's function: what, beside the space, defines a trial."""
        custom = self.custom_search_space
        return {**fixed, **({} if custom is None else {"hydra.sweeper.custom_search_space": custom})}

    def open_study(
        self,
        storage: optuna.storages.BaseStorage | None,
        space: dict[str, BaseDistribution],
        fixed: dict[str, str],
    ) -> optuna.Study:
        """The stored study, refused in one line (and left untouched) if it was created for other directions,
        objectives, search space or fixed overrides; created, with a record of them, if there is none. A study
        stored before they were recorded adopts this command's. In memory: a new study."""
        if storage is None:
            log.info("study %s is kept in memory and ends with this sweep; a stored study resumes a killed sweep "
                     "(hydra.sweeper.storage=sqlite:///outputs/optuna.db)", self.study_name)  # fmt: skip
            return optuna.create_study(study_name=self.study_name, directions=self.directions)
        defining = self.defining(fixed)
        asked = settings(", ".join(self.directions), space, defining, self.objectives)
        with storage_errors(str(self.storage_url)):
            try:
                study, created = optuna.load_study(study_name=self.study_name, storage=storage), False
            except KeyError:  # no such study yet (load_if_exists: another sweeper may be creating it now)
                study, created = optuna.create_study(
                    study_name=self.study_name, storage=storage, directions=self.directions, load_if_exists=True
                ), True  # fmt: skip
            directions = ", ".join(direction.name.lower() for direction in study.directions)
            stored = stored_settings(directions, study.user_attrs)
            unrecorded = stored is None  # new, or stored before the record: it keeps only its direction
            if stored is None:
                stored = settings(directions, space, defining, self.objectives)
            problem = disagreement(str(self.study_name), str(self.storage_url), stored, asked)
            if problem:
                raise ConfigError(problem)
            if unrecorded:
                if not created:
                    log.info("study %s in %s has no record of its search space and fixed overrides; recording "
                             "this command's", self.study_name, self.storage_url)  # fmt: skip
                for key, value in record(space, defining, self.objectives).items():
                    study.set_user_attr(key, value)
        return study

    def propose(self, study: optuna.Study, space: dict[str, BaseDistribution], fixed: dict[str, str]) -> optuna.Trial:
        """The next trial: a queued copy of an interrupted one if there is any, else the sampler's proposal,
        seeded by the number of proposals before it. Its overrides are recorded last: they mark it complete."""
        made = proposals_made(study.get_trials(deepcopy=False))
        study.sampler = build_sampler(self.sampler, len(self.objectives), space, made)
        trial = study.ask(space)
        if self.custom_search_space is not None:
            get_method(self.custom_search_space)(self.config, trial)
        trial.set_user_attr("overrides", [f"{key}={value}" for key, value in {**trial.params, **fixed}.items()])
        return trial

    def link(self, trial: optuna.Trial) -> TrialLink:
        """What the trial's runs need to report to it (``rigl_repro.sweeps.trial``)."""
        return TrialLink(
            study=str(self.study_name),
            storage=absolute_storage(self.storage_url),
            trial_id=trial._trial_id,
            number=trial.number,
            params=dict(trial.params),
            objectives=tuple(self.objectives),
            pruner=self.pruner if self.prunes else None,
        )

    def requeue_stale_trials(self, study: optuna.Study) -> None:
        """Fail and queue again the RUNNING trials of a sweeper that died; wait up to one grace period for
        the heartbeats of a sweeper just killed to go stale (trials still beating belong to a live one). A
        journal storage has no heartbeats: its RUNNING trials are taken for a killed sweeper's at once."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if isinstance(study._storage, optuna.storages.JournalStorage):
            for trial in running:
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                queue_again_if_proposed(study, study._storage.get_trial(trial._trial_id))
            running = []
        deadline = time.monotonic() + self.grace_period + 1
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
            space, fixed = search_space([*(f"{key}={value}" for key, value in self.params.items()), *arguments])
            self.validate_options(space)
            if self.study_name is None:
                self.study_name = self.default_study_name(space)
            # Seeds are never searched, so every trial trains the seeds the sweep's own config lists.
            check_trial_seeds(OmegaConf.select(self.config, "trial_seeds"))
            storage = self.open_storage()
            not_identity = self.config.hydra.job.config.override_dirname.exclude_keys
            study = self.open_study(storage, space, objective(fixed, not_identity))
            total = self.n_trials
            grid = grid_size(self.sampler, len(self.objectives), space)
            if grid is not None and grid < total:
                log.info("the grid has %d combinations: the sweep stops after them (n_trials=%d)", grid, total)
                total = grid
        except ConfigError as error:
            log.error("error: %s", error)
            raise SystemExit(2) from None
        if storage is not None:
            self.requeue_stale_trials(study)
        while True:
            if storage is not None:
                study = optuna.load_study(study_name=self.study_name, storage=storage, sampler=study.sampler)
                optuna.storages.fail_stale_trials(study)  # another sweeper of this study may have died meanwhile
            trials = study.get_trials(deepcopy=False)
            running_elsewhere = sum(trial.state == TrialState.RUNNING for trial in trials)  # ours are all told
            to_go = total - len(finished_trials(trials)) - running_elsewhere
            if to_go <= 0:
                break
            batch = [self.propose(study, space, fixed) for _ in range(min(self.n_jobs, to_go))]
            overrides = [(*trial.user_attrs["overrides"], self.link(trial).override()) for trial in batch]
            beating = storage if isinstance(storage, optuna.storages.RDBStorage) else None
            with heartbeats(beating, [trial._trial_id for trial in batch], self.heartbeat_interval):
                returns = launch_or_exit(self.launcher.launch, overrides, self.job_idx)
            self.job_idx += len(returns)
            failures = self.tell(study, batch, returns)
            self.write_results(study)
            if len(failures) / len(returns) > self.max_failure_rate:
                exit_after_failures(failures, len(returns))
        if storage is not None:
            study = optuna.load_study(study_name=self.study_name, storage=storage)
        self.write_results(study)

    def tell(self, study: optuna.Study, batch: Sequence[optuna.Trial], returns: Sequence[Any]) -> list[Any]:
        """Record the jobs' results; returns (overrides, error) of the trials that failed. A job that raised
        anything but a run failure or a pruned trial (a bug) raises here, with its traceback."""
        failures = []
        for trial, result in zip(batch, returns):
            error = result._return_value if result.status == JobStatus.FAILED else None  # the run logged it
            if isinstance(error, optuna.TrialPruned):
                self.tell_one(study, trial, None, TrialState.PRUNED)
                log.info("trial %d pruned: %s", trial.number, error)
                continue
            if error is not None and not isinstance(error, RUN_FAILURES):
                study.tell(trial, state=TrialState.FAIL)
                result.return_value  # raises it
            values = None
            if error is None:
                try:
                    values = trial_values(result.return_value, self.objectives)
                except ValueError as problem:
                    error = problem
            if not self.tell_one(study, trial, values, TrialState.COMPLETE if values is not None else TrialState.FAIL):
                continue
            if values is None:
                log.warning("trial %d failed: %s", trial.number, str(error).splitlines()[0] if str(error) else error)
                failures.append((" ".join(result.overrides or ()), error))
                continue
            params = ", ".join(
                f"{key}={number:.4g}" if isinstance(number, float) else f"{key}={number}"
                for key, number in trial.params.items()
            )
            done = len(finished_trials(study.get_trials(deepcopy=False)))
            shown = ", ".join(f"{name} {value:.4f}" for name, value in zip(self.objectives, values))
            log.info("trial %d (%d/%d done): %s -> %s", trial.number, done, self.n_trials, params, shown)
        return failures

    def tell_one(self, study: optuna.Study, trial: optuna.Trial, values: list[float] | None, state: TrialState) -> bool:
        """Tell the study; False if the trial was already finished by another process (its result is kept)."""
        try:
            study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was already finished by another process; keeping its result", trial.number)
            return False
        except RuntimeError as error:  # the grid sampler ends its grid with Study.stop(), meant for optimize()
            if "Study.stop" not in str(error):  # the trial is told by then; the sweep counts the grid itself
                raise
        return True

    def write_results(self, study: optuna.Study) -> None:
        """The study's state and best trial (several objectives: its Pareto front, also as a table and a plot)
        in ``<sweep dir>/optuna/<study>.yaml``, rewritten after every batch."""
        trials = study.get_trials(deepcopy=False)
        finished = finished_trials(trials)
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        pruned = [t for t in finished if t.state == TrialState.PRUNED]
        results: dict[str, Any] = {
            "study": self.study_name, "storage": self.storage_url, "n_trials": self.n_trials,
            "objectives": list(self.objectives), "directions": self.directions, "complete": len(complete),
            "pruned": len(pruned), "failed": len(finished) - len(complete) - len(pruned),
        }  # fmt: skip
        assert self.config is not None
        folder = Path(self.config.hydra.sweep.dir) / "optuna"
        stem = folder_name(str(self.study_name))
        try:
            if complete and len(self.objectives) == 1:
                best = study.best_trial
                results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
                log.info("study %s: best trial %d, %s -> %.4f", self.study_name, best.number, best.params, best.value)
            elif complete:
                front = pareto_front(complete, self.directions)
                results["pareto_front"] = [
                    {"trial": t.number, "values": dict(zip(self.objectives, t.values)), "params": t.params}
                    for t in front
                ]  # fmt: skip
                written = write_pareto(complete, self.objectives, self.directions, folder, stem)
                log.info("study %s: %d trial(s) on the Pareto front of %d; %s", self.study_name, len(front),
                         len(complete), ", ".join(str(path) for path in written))  # fmt: skip
            with atomic_file(folder / f"{stem}.yaml") as temporary:  # a kill never leaves half a results file
                OmegaConf.save(OmegaConf.create(results), temporary)
        except OutputError as error:  # the trials are safe in the storage; the same command writes it again
            log.error("error: %s", error)
            raise SystemExit(2) from None


def absolute_storage(url: str | None) -> str | None:
    """The storage URL with a relative SQLite or journal path made absolute: a trial's runs may start in
    another working directory (a SLURM node)."""
    if url is None:
        return None
    journal = journal_path(url)
    if journal is not None:
        return f"{JOURNAL_SCHEME}{journal.resolve()}"
    database = sqlite_path(url)
    if database is not None and not database.is_absolute():
        return f"sqlite:///{database.resolve()}"
    return url
