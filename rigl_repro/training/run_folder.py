"""One process per run folder: a lock that the operating system releases when its process dies, so two
identical commands never train into the same files, and a killed run's lock is simply taken over."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rigl_repro.errors import ConfigError

LOCK_FILE = ".lock"
# Temporary files of atomic writes (summary.json, checkpoints); a kill between write and rename leaves them.
TEMPORARY_PATTERNS = (".*.json.*", ".*.pt.*")


class RunFolderBusy(ConfigError):
    """Another live process is training in this run folder."""


@contextmanager
def run_folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs. ``flock`` locks belong to the open file, so they vanish
    with a killed process: a lock file left behind is taken over, never waited on."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderBusy(
                f"{folder} is in use by {holder}; wait for that run to end (it is the same run), or stop it"
            ) from None
        handle.truncate(0)
        handle.write(f"process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        remove_temporary_files(folder)  # under the lock: no live writer owns them
        yield
    finally:
        handle.close()  # releases the lock


def remove_temporary_files(folder: Path) -> list[Path]:
    """Delete the half-written temporary files a killed run left in ``folder``; returns them."""
    removed = [path for pattern in TEMPORARY_PATTERNS for path in folder.glob(pattern) if path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
