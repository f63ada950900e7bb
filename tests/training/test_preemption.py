"""A run told to stop (SLURM's warning signal) checkpoints the epoch in progress and resumes exactly there."""

import json
import signal

import pytest
import torch

from rigl_repro.errors import ConfigError
from rigl_repro.run.config import signal_numbers
from rigl_repro.sparsity import SparseEngine
from rigl_repro.training.preemption import Stopped, StopRequest
from rigl_repro.training.session import run
from tests.helpers import compose_config

OVERRIDES = ("train.epochs=3", "masking=rigl", "masking.delta_t=3", "masking.density=0.2")  # 20 steps an epoch
STOP_AT_STEP = 27  # the 7th step of the second epoch, after a RigL update at step 27 (27 = 9 x delta_t)


def signal_at_step(monkeypatch, step, signum=signal.SIGUSR2):
    """Deliver ``signum`` to this process right after training step ``step``, as SLURM would mid-epoch."""
    original = SparseEngine.step

    def step_and_signal(self):
        updated = original(self)
        if self.step_count == step:
            signal.raise_signal(signum)
        return updated

    monkeypatch.setattr(SparseEngine, "step", step_and_signal)


@pytest.fixture
def launcher_handler():
    """A handler standing in for submitit's: it records the signal and ends the job, as its requeue does."""
    calls = []

    def requeue_and_exit(signum, frame):
        calls.append(signum)
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, requeue_and_exit)
    yield calls
    signal.signal(signal.SIGUSR2, previous)


def test_a_run_told_to_stop_checkpoints_mid_epoch_and_resumes_exactly(tmp_path, monkeypatch, launcher_handler):
    straight = run(compose_config(*OVERRIDES), tmp_path / "straight")

    with monkeypatch.context() as patch:
        signal_at_step(patch, STOP_AT_STEP)
        with pytest.raises(SystemExit):
            run(compose_config(*OVERRIDES), tmp_path / "stopped")
    assert launcher_handler == [signal.SIGUSR2]  # the launcher still got its signal, after the checkpoint
    assert signal.getsignal(signal.SIGUSR2).__name__ == "requeue_and_exit"  # and its handler is back
    state = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["engine"]["step"] == STOP_AT_STEP
    assert state["epoch_in_progress"]["batches_done"] == STOP_AT_STEP - 20
    assert not (tmp_path / "stopped" / "summary.json").exists()

    resumed = run(compose_config(*OVERRIDES), tmp_path / "stopped")
    assert launcher_handler == [signal.SIGUSR2]
    for key in ("test_acc", "val_acc", "layer_densities", "flops"):
        assert resumed[key] == straight[key], key
    timeless = [{k: v for k, v in entry.items() if k != "images_per_s"} for entry in resumed["history"]]
    assert timeless == [{k: v for k, v in entry.items() if k != "images_per_s"} for entry in straight["history"]]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_signal_whose_previous_handler_returns_stops_the_run_in_one_line(tmp_path, monkeypatch):
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        signal_at_step(monkeypatch, 5)
        with pytest.raises(Stopped, match=r"^stopped by SIGUSR2 in epoch 1 after step 5; the checkpoint is saved"):
            run(compose_config(*OVERRIDES), tmp_path)
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch_in_progress"]["batches_done"] == 5


def test_signals_not_listed_are_left_to_their_handlers(tmp_path, monkeypatch, launcher_handler):
    signal_at_step(monkeypatch, 5)
    with pytest.raises(SystemExit):  # the launcher's handler acts at once, as before: no checkpoint yet
        run(compose_config(*OVERRIDES, "checkpoint.on_signals=[]"), tmp_path)
    assert launcher_handler == [signal.SIGUSR2]
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_signal_after_the_last_step_lets_the_run_finish(tmp_path, monkeypatch, launcher_handler):
    signal_at_step(monkeypatch, 60)  # the last step of the last epoch
    summary = run(compose_config(*OVERRIDES), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert launcher_handler == []


def test_signal_names():
    assert signal_numbers(["SIGUSR2", "term"]) == [signal.SIGUSR2, signal.SIGTERM]
    assert signal_numbers("USR1") == [signal.SIGUSR1] and signal_numbers(None) == []
    with pytest.raises(ConfigError, match=r"checkpoint.on_signals contains 'SIGFOO', which is not a signal here"):
        StopRequest(["SIGFOO"])
    with pytest.raises(ConfigError, match=r"checkpoint.on_signals contains 'SIGKILL', which cannot be caught"):
        StopRequest(["SIGKILL"])
    with pytest.raises(ConfigError, match=r"^checkpoint.on_signals=5 is invalid; expected a list of signal names"):
        StopRequest(5)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_kill_checkpoint_mid_epoch_and_the_run_resumes_exactly(tmp_path, monkeypatch, signum, code):
    """Where only Python's default handles them, SIGINT and SIGTERM stop a run as SIGUSR2 does, with the
    exit code a shell gives a process the signal ended."""
    straight = run(compose_config(*OVERRIDES), tmp_path / "straight")
    # Python's own default, whatever this process inherited (started in the background, SIGINT is ignored).
    previous = signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    try:
        with monkeypatch.context() as patch:
            signal_at_step(patch, STOP_AT_STEP, signum)
            with pytest.raises(Stopped, match=rf"^{signal.Signals(signum).name}: stopped in epoch 2 after step 27; "
                                              "the checkpoint is saved: run the same command to resume$") as stopped:
                run(compose_config(*OVERRIDES), tmp_path / "stopped")
        assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)  # the default is back
    finally:
        signal.signal(signum, previous)
    assert stopped.value.exit_code == code
    state = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert state["engine"]["step"] == STOP_AT_STEP and state["epoch_in_progress"]["batches_done"] == 7
    resumed = run(compose_config(*OVERRIDES), tmp_path / "stopped")
    for key in ("test_acc", "val_acc", "layer_densities", "flops"):
        assert resumed[key] == straight[key], key


def test_a_handler_someone_installed_keeps_sigterm(tmp_path, monkeypatch):
    """submitit (and any launcher) that handles SIGTERM itself keeps it: the run does not take it over."""
    calls = []

    def launcher(signum, frame):
        calls.append(signum)
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGTERM, launcher)
    try:
        signal_at_step(monkeypatch, 5, signal.SIGTERM)
        with pytest.raises(SystemExit):
            run(compose_config(*OVERRIDES), tmp_path)
        assert calls == [signal.SIGTERM] and not (tmp_path / "checkpoint.pt").exists()
    finally:
        signal.signal(signal.SIGTERM, previous)
