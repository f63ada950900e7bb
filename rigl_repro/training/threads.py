"""How many CPU threads a run computes with: its share of the cores, not all of them.

PyTorch starts as many intra-op threads as the machine has cores, whatever else runs there. Several runs at
once (the parallel launcher, SLURM jobs sharing a node, tests beside a training run) then oversubscribe the
cores, and every run slows down many times over: a small run on 2 cores took 648 ms a step with 2 threads
each under contention against 23 ms with 1 (issue 14). ``threads=auto`` gives each run the cores it may use
divided by the runs that share them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from rigl_repro.errors import ConfigError

log = logging.getLogger(__name__)


def thread_count(setting: Any, cores: int, sharing_runs: int, environ: Mapping[str, str]) -> int:
    """The intra-op thread count for ``threads=setting``.

    A positive integer is taken as it is. ``auto`` is ``OMP_NUM_THREADS`` when that is set (an explicit
    choice: SLURM and users set it), else ``cores`` (those this process may run on, at most SLURM's
    ``SLURM_CPUS_PER_TASK``) divided by ``sharing_runs`` (the runs a launcher starts at once on this machine),
    and at least 1.
    """
    if setting == "auto":
        explicit = environ.get("OMP_NUM_THREADS", "")
        if explicit.isdigit() and int(explicit) >= 1:
            return int(explicit)
        slurm_cpus = environ.get("SLURM_CPUS_PER_TASK", "")
        if slurm_cpus.isdigit() and int(slurm_cpus) >= 1:
            cores = min(cores, int(slurm_cpus))
        return max(1, cores // max(1, sharing_runs))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"threads={setting!r} is invalid; expected auto or a number of threads >= 1")
    return setting


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which SLURM and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def apply_thread_policy(setting: Any) -> int:
    """Set this process's intra-op thread count by :func:`thread_count` and return it. Like the seed, a
    process-wide setting that every run sets, so one run never inherits another's."""
    threads = thread_count(setting, usable_cores(), runs_sharing_cores(), os.environ)
    torch.set_num_threads(threads)
    log.debug("%d CPU threads", threads)
    return threads
