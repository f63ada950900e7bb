"""How OpenMP's idle threads wait: spinning when the cores are free, sleeping when other processes use them.

libgomp's threads spin for about 3 ms after each parallel region before they sleep. Alone on the machine that
is what makes a small run fast; beside a busy process it makes a run with a thread per core several times
slower, as its spinning threads take turns on a core with that process (issue 25, measured by
``scripts/bench_threads.py`` on 2 cores: one Fashion-MNIST epoch, 2 threads, 8.6 s alone spinning and 10.8 s
alone passive; beside one busy process 25.2 s spinning and 13.4 s passive, 12.2 s with 1 thread). The wait
policy changes only speed, never a result (the thread count does, and stays as ``threads`` says), so it is
chosen by the load found at start. OpenMP reads it once, when torch loads it: this module imports nothing
heavy, and ``main.py`` calls :func:`choose_wait_policy` before it imports torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping

EXPLICIT = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # a user's own choice, left as it is
BUSY_ELSEWHERE = 0.5  # cores' worth of other processes' work above which idle threads sleep


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot, from ``/proc/stat``; None where it is unreadable."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle and waiting for I/O
    return sum(fields) - idle, sum(fields)


def busy_cores(interval_s: float = 0.1) -> float | None:
    """How many cores' worth of work the machine did during ``interval_s``, this process sleeping meanwhile:
    the other processes' load now (the load average lags by a minute); None where it cannot be read."""
    before = cpu_ticks()
    time.sleep(interval_s)
    after = cpu_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (os.cpu_count() or 1) * (after[0] - before[0]) / (after[1] - before[1])


def wait_policy(environ: MutableMapping[str, str], busy: float | None) -> str | None:
    """``PASSIVE`` when other processes keep at least half a core busy (or the load cannot be read), None
    (OpenMP's own spinning) when the cores are free or the environment already chooses."""
    if any(name in environ for name in EXPLICIT):
        return None
    return "PASSIVE" if busy is None or busy >= BUSY_ELSEWHERE else None


def choose_wait_policy(environ: MutableMapping[str, str]) -> str | None:
    """Set ``OMP_WAIT_POLICY`` in ``environ`` by :func:`wait_policy` and the load now; returns what it set."""
    policy = wait_policy(environ, None if any(name in environ for name in EXPLICIT) else busy_cores())
    if policy is not None:
        environ["OMP_WAIT_POLICY"] = policy
    return policy
