"""What the launchers tell a process, read in one place: where it stands among a run's processes (torchrun's
and SLURM's variables), the cores it may use (its affinity, SLURM's ``SLURM_CPUS_PER_TASK``), and how many runs
the current Hydra launcher starts at once on this machine (the joblib launcher's ``n_jobs``).

Thread counts (``rigl_repro.run.threads``), data-parallel training (``rigl_repro.training.distributed``) and
the Optuna sweeper (``rigl_repro.sweeps``) read the launchers only through this module, so a new launcher is
taught to the project here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass


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

    if not HydraConfig.initialized():
        return 1
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs >= 1 else usable_cores()
