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
from rigl_repro.launchers import runs_sharing_cores, slurm_cpus, usable_cores

log = logging.getLogger(__name__)


def thread_count(setting: Any, cores: int, sharing_runs: int, environ: Mapping[str, str]) -> int:
    """The intra-op thread count for ``threads=setting``.

    A positive integer is taken as it is. ``auto`` is ``OMP_NUM_THREADS`` when that is set (an explicit
    choice: SLURM and users set it), else ``cores`` (those this process may run on, at most SLURM's
    ``SLURM_CPUS_PER_TASK``) divided by ``sharing_runs`` (the runs a launcher starts at once on this machine),
    and at least 1.
    """
    validate_threads(setting)
    if setting == "auto":
        explicit = environ.get("OMP_NUM_THREADS", "")
        if explicit.isdigit() and int(explicit) >= 1:
            return int(explicit)
        cores = min(cores, slurm_cpus(environ) or cores)
        return max(1, cores // max(1, sharing_runs))
    return setting


def validate_threads(setting: Any) -> None:
    """``threads`` is ``auto`` or a positive number of threads, or a one-line error."""
    if setting != "auto" and (isinstance(setting, bool) or not isinstance(setting, int) or setting < 1):
        raise ConfigError(f"threads={setting!r} is invalid; expected auto or a number of threads >= 1")


def apply_thread_policy(setting: Any) -> int:
    """Set this process's intra-op thread count by :func:`thread_count` and return it. Like the seed, a
    process-wide setting that every run sets, so one run never inherits another's."""
    threads = thread_count(setting, usable_cores(), runs_sharing_cores(), os.environ)
    torch.set_num_threads(threads)
    log.debug("%d CPU threads", threads)
    return threads
