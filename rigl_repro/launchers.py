"""What the launchers tell a process, read in one place: where it stands among a run's processes (torchrun's
and SLURM's variables), the cores it may use (its affinity, SLURM's ``SLURM_CPUS_PER_TASK``), and how many runs
the current Hydra launcher starts at once on this machine (the joblib launcher's ``n_jobs``), and the sweeper a
run's worker process must not outlive.

Thread counts (``rigl_repro.run.threads``), data-parallel training (``rigl_repro.training.distributed``) and
the Optuna sweeper (``rigl_repro.sweeps``) read the launchers only through this module, so a new launcher is
taught to the project here.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

SWEEPER_PID = "RIGL_REPRO_SWEEPER_PID"  # set by the project's sweepers, inherited by their launchers' workers


@dataclass(frozen=True)
class Launch:
    """Where this process stands in the run's world, as its launcher described it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = ""
    master_port: int = 0


def slurm_master(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[01-04],gpu7`` -> ``node01``), as ``scontrol`` expands it."""
    try:
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True, timeout=30).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        hosts = []
    if hosts:
        return hosts[0]
    first = nodelist.split(",")[0]
    if "[" in first:  # scontrol is missing: expand the first range by hand
        prefix, ranges = first.split("[", 1)
        first = prefix + ranges.split(",")[0].split("-")[0].rstrip("]")
    return first


def launch_from_environment(environ: Mapping[str, str]) -> Launch:
    """This process's place in the world: torchrun's variables, else those of a SLURM step of several tasks,
    else a world of one. SLURM's port is derived from the job id, so that every task picks the same one."""
    if "WORLD_SIZE" in environ and "RANK" in environ:
        return Launch(
            rank=int(environ["RANK"]),
            world_size=int(environ["WORLD_SIZE"]),
            local_rank=int(environ.get("LOCAL_RANK", 0)),
            master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(environ.get("MASTER_PORT", 29500)),
        )
    tasks = int(environ.get("SLURM_STEP_NUM_TASKS", 1))
    if tasks > 1 and "SLURM_PROCID" in environ:
        job = int(environ.get("SLURM_JOB_ID", 0))
        return Launch(
            rank=int(environ["SLURM_PROCID"]),
            world_size=tasks,
            local_rank=int(environ.get("SLURM_LOCALID", 0)),
            master_addr=slurm_master(environ.get("SLURM_STEP_NODELIST", environ.get("SLURM_JOB_NODELIST", ""))),
            master_port=20000 + job % 20000,
        )
    return Launch()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which SLURM and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def slurm_cpus(environ: Mapping[str, str]) -> int | None:
    """The CPUs SLURM gave each task of the job (``SLURM_CPUS_PER_TASK``), or None outside such a job."""
    value = environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def runs_sharing_cores() -> int:
    """How many runs the current Hydra launcher starts at once on this machine: ``n_jobs`` of the parallel
    (joblib) launcher, where a non-positive value means one run per core; 1 otherwise (one run after another,
    or a SLURM job, whose cores are its own)."""
    from hydra.core.hydra_config import HydraConfig

    if "joblib" not in hydra_launcher().lower():
        return 1
    n_jobs = int(HydraConfig.get().launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs >= 1 else usable_cores()


def hydra_launcher() -> str:
    """The ``_target_`` of the current Hydra launcher, or "" outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    return str(HydraConfig.get().launcher.get("_target_", ""))


def announce_sweeper(environ: MutableMapping[str, str] = os.environ) -> None:
    """Tell the processes a sweeper's launcher starts from now on (they inherit the environment) whose they are."""
    environ[SWEEPER_PID] = str(os.getpid())


def sweeper_to_outlive(environ: Mapping[str, str], launcher: str, pid: int) -> int | None:
    """The sweeper process this run's process must stop with: the one that announced itself, when the run is
    a job of the joblib launcher in a process of its own (a worker that sweeper started). None when the run is
    the sweeper's own process (one job at a time) or runs elsewhere (a SLURM job outlives its sweeper: it is
    the scheduler's, and a restarted sweep waits for its run folder)."""
    announced = environ.get(SWEEPER_PID, "")
    if "joblib" not in launcher.lower() or not announced.isdigit() or int(announced) == pid:
        return None
    return int(announced)


def watch_sweeper(sweeper: int, signum: int, poll_s: float, grace_s: float) -> None:
    """Wait while ``sweeper`` is this process's parent; once it is gone (killed: its workers are handed to
    init), send this process ``signum`` (the run checkpoints at its next step and ends), and end it for good
    ``grace_s`` later if it is still there (it was evaluating, or between jobs with a handler that returned)."""
    while os.getppid() == sweeper:
        time.sleep(poll_s)
    log.warning("the sweeper (process %d) is gone; stopping this run with %s (the same command resumes it)",
                sweeper, signal.Signals(signum).name)  # fmt: skip
    os.kill(os.getpid(), signum)
    time.sleep(grace_s)
    os.kill(os.getpid(), signal.SIGKILL)


_watched: set[int] = set()  # the sweepers this process already watches (a worker runs one job after another)


def stop_with_sweeper(signum: int = signal.SIGTERM, poll_s: float = 1.0, grace_s: float = 60.0) -> None:
    """In a worker process of a sweep's joblib launcher, stop (with ``signum``) when the sweeper dies. A
    SIGKILLed sweeper cannot stop its loky workers, which would train on for hours with no one to take their
    result. Polls the parent rather than asking Linux (``PR_SET_PDEATHSIG``) because that signal follows the
    *thread* that forked the worker, which in loky may be a helper thread that ends while the sweeper lives."""
    sweeper = sweeper_to_outlive(os.environ, hydra_launcher(), os.getpid())
    if sweeper is None or sweeper in _watched:
        return
    if os.getppid() != sweeper:  # not the sweeper's own worker (another backend, a process in between): its
        log.debug("process %d is not the sweeper's child; not watching it", os.getpid())  # parent says nothing
        return
    _watched.add(sweeper)
    threading.Thread(target=watch_sweeper, args=(sweeper, signum, poll_s, grace_s), name="sweeper-watch",
                     daemon=True).start()  # fmt: skip
