"""What every experiment logger implements: three calls, made by the trainer's main process only.

What a logger receives, in order:

1. At construction, besides its own options: ``config`` (the run's whole resolved config), ``output_dir``
   (the run folder, which exists), ``labels`` (``RunLabels``: name, group, tags and job type; by default
   ``rigl_repro.loggers.labels.run_labels(config)``, a sweep trial's from ``rigl_repro.sweeps.trial``) and
   ``history``: the epochs a resumed run has already trained (the checkpoint's history, each entry as in 2.),
   empty for a new run. A logger that keeps files makes them
   equal to this history, since epochs logged after the last checkpoint are trained again.
2. ``log(metrics, step)`` once per finished epoch, ``metrics`` being the trainer's epoch entry
   (``Trainer.train_epoch``) and ``step`` its ``metrics["step"]``: ``epoch``, ``step`` (global steps done),
   ``train_loss``, ``train_acc``, ``val_acc`` (None without a validation set), ``lr``, ``density`` (over the
   budgeted layers, as the summary's), ``density_all_layers`` (over every masked layer), ``layer_densities``
   (a dict, layer name to density; empty for unmasked models), ``mask_updates`` (a list, one dict per
   topology update in the epoch: ``step``, ``replaced``, ``layer_replaced`` (a list in ``layer_densities``'
   order), ``exploration``), ``exploration`` and ``images_per_s``. A logger records every other number an
   entry holds too, under its key.
3. ``log({"test_acc": ...}, step=total_steps)`` once, after the last epoch: a final number, not an epoch (it
   has no ``epoch`` key).
4. ``summarize(summary)`` once: ``summary.json``'s final numbers under its names (``test_acc``, ``val_acc``,
   ``density``, ``density_all_layers``, ``initial_density``, ``exploration``, ``epochs``, ``steps``,
   ``wall_time_s``, ``parameters``, ``flops`` (a dict), ``layer_densities`` (a dict)); a logger records what it
   receives, whatever the keys.
5. ``finish()``, always, also when training failed or was stopped (the trainer calls it in a ``finally``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class RunLabels:
    """How an experiment tracker files a run, so that runs can be told apart and found again: ``name`` (read in
    a run list), ``group`` (the runs a table cell averages), ``tags`` (for filtering) and ``job_type``. Every run
    gets them from its config (``rigl_repro.loggers.labels.run_labels``); a sweep trial's runs
    (``rigl_repro.sweeps.trial``) are named by trial and grouped by study. ``config`` is added to the tracked
    config; ``objectives`` names the numbers (``rigl_repro.sweeps.objectives``) the summary also records under
    ``objective/<name>``. Loggers that keep files in the run folder ignore them: the folder is the run's own."""

    name: str | None = None
    group: str | None = None
    job_type: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


class Logger(ABC):
    """An experiment logger. A subclass with a ``name`` is registered under it (``logger.name``) and made by
    ``build_logger`` as ``cls(**options, config=..., output_dir=..., history=..., labels=...)``.

    ``defaults`` names its options (the keys of its ``conf/logger/<name>.yaml`` beside ``name``) with the
    values a config that omits one gets; ``ignored`` names options that other loggers' settings may leave
    in its config node and that it accepts and disregards. ``validate_options`` checks the values before
    anything is written, so that a bad one stops the run in one line before it trains.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    ignored: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        """Raise a one-line ConfigError naming the first bad option of ``options`` (its known ones only)."""

    @abstractmethod
    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Record ``metrics`` at global step ``step``: an epoch's entry, or the final ``{"test_acc": ...}``."""

    @abstractmethod
    def summarize(self, summary: Mapping[str, Any]) -> None:
        """Record the run's final numbers."""

    @abstractmethod
    def finish(self) -> None:
        """Close whatever the logger holds open; called once, also after a failure."""


class NullLogger(Logger):
    """Logs nothing: what processes that write no files (ranks other than 0) get. Unnamed, so not selectable."""

    def __init__(self, **_: Any) -> None:
        pass

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        pass

    def summarize(self, summary: Mapping[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass

