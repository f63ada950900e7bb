"""What the launchers tell a process (rigl_repro/launchers.py), and the workers of a parallel sweep ending
with their sweeper (issue 23, family 6)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rigl_repro import launchers
from rigl_repro.launchers import (
    SWEEPER_PID,
    Launch,
    announce_sweeper,
    launch_from_environment,
    slurm_master,
    sweeper_to_outlive,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_launcher_s_environment_says_where_a_process_stands():
    assert launch_from_environment({}) == Launch()
    torchrun = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"}
    assert launch_from_environment(torchrun) == Launch(1, 4, 1, "n1", 1234)
    slurm = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123",
             "SLURM_STEP_NODELIST": "gpu[07-08]"}  # fmt: skip
    assert launch_from_environment(slurm) == Launch(3, 4, 1, slurm_master("gpu[07-08]"), 20123)
    assert slurm_master("gpu[07-08]") == "gpu07" and slurm_master("a,b") == "a"
    batch_script = {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "5"}  # no srun step: one process
    assert launch_from_environment(batch_script) == Launch()


def test_a_run_watches_the_sweeper_that_started_it_only_as_a_parallel_worker():
    announced = {SWEEPER_PID: "100"}
    assert sweeper_to_outlive(announced, "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", 200) == 100
    assert sweeper_to_outlive(announced, "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", 100) is None  # itself
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert sweeper_to_outlive(announced, slurm, 200) is None  # a SLURM job is the scheduler's, not the sweeper's
    assert sweeper_to_outlive({}, "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", 200) is None
    environ = {}
    announce_sweeper(environ)
    assert environ == {SWEEPER_PID: str(os.getpid())}


@pytest.mark.parametrize("parent", [True, False], ids=["the sweeper's child", "not its child"])
def test_a_worker_watches_its_sweeper_only_when_it_is_its_parent(monkeypatch, parent):
    started = []

    class Recorder:
        def __init__(self, target, args, name, daemon):
            self.args = args

        def start(self):
            started.append(self.args[0])

    announced = os.getppid() if parent else os.getppid() + 1_000_000  # a process that is not ours
    monkeypatch.setenv(SWEEPER_PID, str(announced))
    monkeypatch.setattr(launchers, "hydra_launcher", lambda: "hydra_plugins.hydra_joblib_launcher.JoblibLauncher")
    monkeypatch.setattr(launchers.threading, "Thread", Recorder)
    monkeypatch.setattr(launchers, "_watched", set())
    launchers.stop_with_sweeper()
    assert started == ([announced] if parent else [])  # otherwise its first poll would stop this very process


def alive(pid):
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(map(alive, pids)):
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


WORKER = """
import os, signal, sys, threading, time
from rigl_repro.launchers import watch_sweeper
if sys.argv[1] == "ignores SIGTERM":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
threading.Thread(target=watch_sweeper, args=(os.getppid(), signal.SIGTERM, 0.05, 1.0), daemon=True).start()
print("watching", flush=True)
time.sleep(120)
"""
SWEEPER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
worker.stdout.readline()
print(worker.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("worker", ["ends on SIGTERM", "ignores SIGTERM"])
def test_a_worker_stops_when_its_sweeper_is_killed(worker):
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    sweeper = subprocess.Popen([sys.executable, "-c", SWEEPER, WORKER, worker], stdout=subprocess.PIPE, text=True,
                               env=environment)  # fmt: skip
    worker_pid = int(sweeper.stdout.readline())
    try:
        assert gone_within([worker_pid], 0.5) == [worker_pid]  # it watches: it does not end on its own
        sweeper.kill()
        sweeper.wait()
        assert gone_within([worker_pid], 5) == []  # SIGTERM, or SIGKILL one grace period (1 s) after it
    finally:
        if alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


def children(pid):
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_the_workers_of_a_killed_parallel_sweep_checkpoint_and_end(tmp_path):
    root = tmp_path / "runs"
    command = [sys.executable, str(ROOT / "main.py"), "-m", "scale=smoke", "train.epochs=500", f"output_root={root}",
               "logger.mode=disabled", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "masking=rigl",
               "masking.density=0.1,0.2"]  # fmt: skip
    sweep = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(root.rglob("checkpoint.pt"))) < 2:  # both runs train
            assert sweep.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        workers = children(sweep.pid)  # loky's workers and resource trackers
        assert len(workers) >= 2
        sweep.kill()
        sweep.wait()
        assert gone_within(workers, 15) == []
        logs = [path.read_text() for path in root.rglob("main.log")]
        assert len(logs) == 2 and all("SIGUSR2: checkpointed in epoch" in log for log in logs)
    finally:
        sweep.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
