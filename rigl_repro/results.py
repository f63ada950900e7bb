"""Run results on disk: every run's ``summary.json``, the one source that report scripts read."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rigl_repro.errors import ConfigError

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


class OutputError(ConfigError):
    """A run's file cannot be written (a full disk, a read-only folder): reported in one line, as a bad
    configuration is, after the half-written file is removed."""


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the process's umask (temporary files get 0600). Read from
    /proc where it can be: ``os.umask`` sets the umask to read it, which other threads would see."""
    try:
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; it replaces ``path`` when the block ends, so
    ``path`` is the old file or the complete new one, never half of one. On failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, new_file_mode())
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # on disk before the rename: "old or whole" survives a power cut too
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError(
            f"{path} could not be written ({error.strerror or error}); free some space or fix the folder's "
            "permissions, then run the same command again"
        ) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON through ``atomic_file``."""
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class SummaryError(ConfigError):
    """A ``summary.json`` that cannot be read or is not a run's summary."""


def load_summary(path: Path) -> dict[str, Any]:
    """The summary in ``path``; a SummaryError, naming the file and what to do, if it is not one."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error.__class__.__name__
        raise SummaryError(f"{path} cannot be read ({reason})") from None
    except ValueError as error:
        raise SummaryError(f"{path} is not valid JSON ({error}); delete it to train that run again") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise SummaryError(f"{path} is not a run summary (no config); delete it to train that run again")
    return summary


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run's summary, or None if the run has not finished."""
    path = Path(run_dir) / SUMMARY_FILE
    return load_summary(path) if path.is_file() else None


def collect_summaries(root: Path) -> list[dict[str, Any]]:
    """Every finished run's summary below ``root``, each with its ``run_dir``, in path order. Unreadable
    summaries are listed in a warning and left out: one broken file does not stop a report."""
    summaries, unreadable = [], []
    for path in sorted(Path(root).rglob(SUMMARY_FILE)):
        try:
            summary = load_summary(path)
        except SummaryError as error:
            unreadable.append(str(error))
            continue
        summary["run_dir"] = str(path.parent)
        summaries.append(summary)
    if unreadable:
        log.warning("left out %d unreadable run(s):\n  %s", len(unreadable), "\n  ".join(unreadable))
    return summaries
