"""One process per run folder: a lock that the operating system releases when its process dies, so two
identical commands never train into the same files, and a killed run's lock is simply taken over."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rigl_repro.errors import ConfigError
from rigl_repro.results import SUMMARY_FILE
from rigl_repro.training.checkpoint import CHECKPOINT_FILE, INITIAL_WEIGHTS_FILE

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# Temporary files of atomic writes (``atomic_file``: "." + name + "." + mkstemp's 8 characters); a kill
# between write and rename leaves them.
TEMPORARY_PATTERNS = tuple(f".{name}.{'?' * 8}" for name in (SUMMARY_FILE, CHECKPOINT_FILE, INITIAL_WEIGHTS_FILE))


class RunFolderBusy(ConfigError):
    """Another live process is training in this run folder."""


@contextmanager
def run_folder_lock(folder: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs; if another process holds it, wait for it (``wait``: a
    sweep, which then reuses that run's result) or refuse. ``flock`` locks belong to the open file, so they
    vanish with a killed process: a lock file left behind is taken over, never waited on. Where the file
    system has no locks, a warning says so and the run goes on unlocked."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if not wait:
                raise RunFolderBusy(
                    f"{folder} is in use by {holder}; wait for that run to end (it is the same run), or stop it"
                ) from None
            log.info("%s is in use by %s; waiting for it to end", folder, holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:  # ENOLCK, ENOSYS: e.g. NFS mounted with nolock
            log.warning("%s cannot be locked (%s): two identical commands could write into it at once",
                        folder, error.strerror or error)  # fmt: skip
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


# What Hydra writes into a job's folder before the run starts: its saved config and the job's log.
HYDRA_FILES = frozenset({".hydra", "main.log"})


def remove_if_unused(folder: Path, root: Path) -> bool:
    """Remove a run folder that holds nothing but Hydra's files (a run refused before it wrote anything),
    and its group folder if that is left empty; never anything outside ``root``. Returns whether it did."""
    folder, root = Path(os.path.abspath(folder)), Path(os.path.abspath(root))
    if root not in folder.parents or not folder.is_dir() or not {item.name for item in folder.iterdir()} <= HYDRA_FILES:
        return False
    for item in folder.iterdir():
        if item.is_dir():
            for saved in item.iterdir():
                saved.unlink()
            item.rmdir()
        else:
            item.unlink()
    folder.rmdir()
    parent = folder.parent
    if parent != root and root in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
    return True
