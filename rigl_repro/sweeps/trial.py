"""A sweep trial's runs and its study: the channel that Hydra's sweepers lack (Hydra issue 1954, launched jobs
have no way back to the sweeper), so that a run reports its validation accuracy after every epoch and its
trial's pruner can stop it.

The sweeper gives each job one more override, ``++hydra.job.env_set.RIGL_REPRO_OPTUNA_TRIAL='<json>'``: Hydra
sets the variable in the job's process while the job runs, with every launcher (in process, joblib's workers,
SLURM's nodes), and a ``hydra.*`` override is not part of the run's folder name or identity. It names the study's
storage, the trial and what the run needs to know about it (``TrialLink``). The run opens the storage itself,
writes its intermediate values, and asks the study's pruner; the sweeper only reads the outcome.

Steps are epochs. A trial that trains several seeds (``trial_seeds``) trains them one after another; while seed
``k`` trains, the trial's curve is the mean validation accuracy over seeds ``0..k`` at each epoch seed ``k`` has
reached, and that curve is what the pruner judges (after every epoch, and between seeds). So a pruner's
warm-up and its comparison with other trials at the same epoch keep their meaning, and the stored intermediate
value of a finished trial at epoch ``e`` is the mean over all its seeds (the last step: its objective). A
curve that restarted with each seed (seed ``k``'s epoch ``e`` as step ``k * epochs + e``) would not do: the
median and percentile pruners compare a trial's best value so far, which the first seed's final accuracy would
hold from then on, so no trial would be stopped after its first seed.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rigl_repro.loggers.base import RunLabels
from rigl_repro.loggers.labels import run_labels
from rigl_repro.results import PRUNED_FILE, atomic_file

log = logging.getLogger(__name__)

TRIAL_VARIABLE = "RIGL_REPRO_OPTUNA_TRIAL"


@dataclass(frozen=True)
class TrialLink:
    """What a trial's runs know of their trial: the study (its storage, None in memory), the trial's id and
    number, its parameters and objectives, and the pruner node (None: no pruning)."""

    study: str
    storage: str | None
    trial_id: int
    number: int
    params: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = ("val_acc",)
    pruner: dict[str, Any] | None = None

    def override(self) -> str:
        """The Hydra override that hands this link to the trial's job (a quoted JSON string: JSON escapes a
        single quote inside a name as ``\\u0027``, so the quoting never breaks)."""
        text = json.dumps(asdict(self), sort_keys=True, default=str).replace("'", "\\u0027")
        return f"++hydra.job.env_set.{TRIAL_VARIABLE}='{text}'"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> TrialLink | None:
        """The link the sweeper set for this job, or None outside an Optuna sweep."""
        text = environ.get(TRIAL_VARIABLE)
        if not text:
            return None
        fields = json.loads(text)
        fields["objectives"] = tuple(fields.get("objectives", ("val_acc",)))
        return cls(**fields)

    def labels(self, config: Mapping[str, Any]) -> RunLabels:
        """How the trial's run of resolved ``config`` (a plain mapping) is filed by experiment trackers: grouped
        by study (the trials a study compares), named ``trial N · <the run's own name>`` (``run_labels``: its
        method, density and seed), tagged with the run's own tags, with the trial's number, parameters and
        objectives in its config (and the objectives in its summary)."""
        run = run_labels(config)
        trial = {"study": self.study, "number": self.number, "params": self.params, "objectives": list(self.objectives)}
        name = f"trial {self.number} · {run.name}" if run.name else f"trial {self.number}"
        return RunLabels(name=name, group=self.study, job_type="sweep-trial", tags=run.tags, config={"trial": trial},
                         objectives=self.objectives)  # fmt: skip


def mean_at(histories: Sequence[Sequence[Mapping[str, Any]]], epoch: int) -> float | None:
    """The mean validation accuracy at ``epoch`` (index) over ``histories``; None if one lacks it."""
    values = [history[epoch].get("val_acc") if epoch < len(history) else None for history in histories]
    if not values or any(value is None for value in values):
        return None
    return sum(values) / len(values)


def mean_curve(
    finished: Sequence[Sequence[Mapping[str, Any]]], current: Sequence[Mapping[str, Any]]
) -> dict[int, float]:
    """The trial's curve while ``current`` trains after the seeds ``finished``: ``{epoch index: the mean
    validation accuracy over them all}`` for the epochs ``current`` has reached (epochs without one left out)."""
    curve: dict[int, float] = {}
    for epoch in range(len(current)):
        value = mean_at([*finished, current], epoch)
        if value is not None:
            curve[epoch] = value
    return curve


class TrialReport:
    """A trial's runs reporting to its study, seed after seed; every failure to reach the storage is a warning
    (the run goes on unpruned), never the run's end."""

    def __init__(self, link: TrialLink) -> None:
        self.link = link
        self.finished: list[Sequence[Mapping[str, Any]]] = []
        self.reported: dict[int, float] = {}
        self.study: Any = None
        self.unreachable = link.storage is None

    def connect(self) -> Any:
        """The study with its pruner, opened on first use; None once the storage could not be reached."""
        if self.study is None and not self.unreachable:
            import optuna

            from rigl_repro.sweeps.algorithms import build_pruner
            from rigl_repro.sweeps.storage import storage_for_runs

            try:
                storage = storage_for_runs(str(self.link.storage))
                self.study = optuna.load_study(study_name=self.link.study, storage=storage,
                                               pruner=build_pruner(self.link.pruner))  # fmt: skip
            except Exception as error:  # a busy or unreachable storage: train on, unpruned
                log.warning("trial %d cannot reach its study in %s (%s); it trains to the end without reporting",
                            self.link.number, self.link.storage, str(error).splitlines()[0] if str(error) else error)
                self.unreachable = True
        return self.study

    def report(self, current: Sequence[Mapping[str, Any]]) -> dict[int, float]:
        """Write the trial's curve (``mean_curve``) as its intermediate values, where they changed; returns it."""
        curve = mean_curve(self.finished, current)
        study = self.connect()
        if study is None:
            return curve
        for step, value in curve.items():
            if self.reported.get(step) == value:
                continue
            try:  # the storage's own call: it writes a step again (Trial.report keeps the first value)
                study._storage.set_trial_intermediate_value(self.link.trial_id, step, value)
            except Exception as error:  # the trial was finished elsewhere (its sweeper died): stop reporting
                log.warning("trial %d: its value at step %d was not recorded (%s); it trains on unpruned",
                            self.link.number, step, str(error).splitlines()[0] if str(error) else error)
                self.unreachable, self.study = True, None
                return curve
            self.reported[step] = value
        return curve

    def judged(self, curve: Mapping[int, float]) -> bool:
        """Whether the trial's pruner stops the trial on this curve (the other trials are read from the study)."""
        if self.study is None or self.link.pruner is None or not curve:
            return False
        try:
            trial = copy.copy(self.study._storage.get_trial(self.link.trial_id))
            trial.intermediate_values = dict(curve)  # the curve of the seeds so far, up to this epoch
            return bool(self.study.pruner.prune(self.study, trial))
        except Exception as error:
            log.warning("trial %d: its pruner could not decide (%s); it trains on", self.link.number, error)
            return False

    def after_epoch(self, history: Sequence[Mapping[str, Any]], epochs: int) -> bool:
        """The trainer's callback: report the epoch and say whether the trial's pruner stops it here."""
        return self.judged(self.report(history))

    def seed_done(self, history: Sequence[Mapping[str, Any]], more: bool) -> bool:
        """A seed's run finished (or was found finished): report it; with ``more`` seeds to train, whether the
        pruner stops the trial before them."""
        curve = self.report(history)
        self.finished.append(list(history))
        return more and self.judged(curve)

    def last_step(self) -> int | None:
        return max(self.reported) if self.reported else None


def mark_pruned(run_dir: Path, link: TrialLink, epoch: int, epochs: int) -> None:
    """Record in ``run_dir`` that its trial was pruned after ``epoch`` of ``epochs``, so that reports leave the
    folder out; its checkpoint stays for a later trial of the same parameters to resume."""
    record = {"study": link.study, "trial": link.number, "epoch": epoch, "epochs": epochs}
    with atomic_file(Path(run_dir) / PRUNED_FILE) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")


def clear_pruned(run_dir: Path) -> None:
    """A run trains on in a folder where it was once pruned: the folder holds a live run again."""
    (Path(run_dir) / PRUNED_FILE).unlink(missing_ok=True)


def is_pruned(run_dir: Path) -> bool:
    return (Path(run_dir) / PRUNED_FILE).exists()
