"""Checkpoint at the step a job is told to stop, then let the launcher act.

SLURM warns a job before its time limit or a preemption with a signal (submitit asks for SIGUSR2,
``signal_delay_s`` ahead; ``sbatch --signal`` does the same for other set-ups). Without this module the
launcher's handler requeues the job at once and the requeued run repeats every step since its last epoch
checkpoint. With it, the handler only records the signal; the training loop sees the record at the next step
boundary (a Python attribute read, no device sync), writes a checkpoint of the epoch in progress, and then
hands the signal to the handler that was there before: submitit requeues, the default action ends the process.
Ctrl-C (SIGINT) and SIGTERM stop a run the same way wherever only Python's default handles them, and the
process exits 130 or 143 with one line that says how to resume.
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


# Ctrl-C and ``kill``: where nothing but Python's default handles them, they stop a run as the listed signals
# do (checkpoint at the next step boundary), and the process exits 128 + the signal's number (130, 143), the
# code a shell gives a process the signal ended. A handler someone installed (submitit's, a test runner's)
# keeps them.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class Stopped(RuntimeError):
    """The run was told to stop, checkpointed, and the previous handler of the signal did not end it;
    ``exit_code`` is what the process should exit with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StopRequest:
    """While entered, the given signals set ``signum`` instead of acting; ``forward()`` then delivers the
    signal to the handler that was installed before. Installs nothing outside the main thread, where Python
    cannot handle signals (a run in a worker thread keeps the launcher's handling)."""

    def __init__(self, names: Sequence[str] | str | None) -> None:
        self.signals = signal_numbers(names)
        self.signum: int | None = None
        self.previous: dict[int, Handler] = {}
        self.interrupts: set[int] = set()  # of INTERRUPTS, those this request took from the default handler

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self.previous[number] = signal.signal(number, self.record)
            for number in INTERRUPTS:
                if number not in self.previous and signal.getsignal(number) in (signal.default_int_handler,
                                                                                signal.SIG_DFL):  # fmt: skip
                    self.previous[number] = signal.signal(number, self.record)
                    self.interrupts.add(number)
        return self

    def record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum in self.interrupts:  # pressed again: do not wait for the step
            self.restore()
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous, self.interrupts = {}, set()

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
        if self.signum in self.interrupts:  # the default action would end the process with a traceback or silently
            self.restore()
            raise Stopped(f"{name}: stopped {where}; the checkpoint is saved: run the same command to resume",
                          128 + self.signum)  # fmt: skip
        log.warning("%s: checkpointed %s; handing the signal on", name, where)
        self.restore()
        signal.raise_signal(self.signum)
        raise Stopped(f"stopped by {name} {where}; the checkpoint is saved: run the same command to resume")
