"""Checkpoint at the step a job is told to stop, then let the launcher act.

SLURM warns a job before its time limit or a preemption with a signal (submitit asks for SIGUSR2,
``signal_delay_s`` ahead; ``sbatch --signal`` does the same for other set-ups). Without this module the
launcher's handler requeues the job at once and the requeued run repeats every step since its last epoch
checkpoint. With it, the handler only records the signal; the training loop sees the record at the next step
boundary (a Python attribute read, no device sync), writes a checkpoint of the epoch in progress, and then
hands the signal to the handler that was there before: submitit requeues, the default action ends the process.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn

from rigl_repro.run.config import signal_numbers

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any] | int | None


class Stopped(RuntimeError):
    """The run was told to stop, checkpointed, and the previous handler of the signal did not end it."""


class StopRequest:
    """While entered, the given signals set ``signum`` instead of acting; ``forward()`` then delivers the
    signal to the handler that was installed before. Installs nothing outside the main thread, where Python
    cannot handle signals (a run in a worker thread keeps the launcher's handling)."""

    def __init__(self, names: Sequence[str] | str | None) -> None:
        self.signals = signal_numbers(names)
        self.signum: int | None = None
        self.previous: dict[int, Handler] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self.previous[number] = signal.signal(number, self.record)
        return self

    def record(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def __exit__(self, *exc_info: object) -> None:
        if self.signum is not None and exc_info[0] is None:
            log.info("%s arrived after the last training step; the run finished", signal.Signals(self.signum).name)
        self.restore()

    def forward(self, where: str) -> NoReturn:
        """Give the recorded signal to the previous handler (submitit's requeue, or the default action). If that
        handler returns, stop the run with :class:`Stopped` naming ``where`` it stopped."""
        if self.signum is None:  # another process of the same run was told to stop: this one stops with it
            self.restore()
            raise Stopped(f"stopped {where} with the run's other processes; the checkpoint is saved")
        name = signal.Signals(self.signum).name
        log.warning("%s: checkpointed %s; handing the signal on", name, where)
        self.restore()
        signal.raise_signal(self.signum)
        raise Stopped(f"stopped by {name} {where}; the checkpoint is saved: run the same command to resume")
