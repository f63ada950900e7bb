"""Run results on disk: every run's ``summary.json``, the one source that report scripts read, and the rule
for every file the project writes.

Written: every file goes through ``atomic_file`` (the old file or the whole new one, never half of one) and a
failure to write it is one OutputError line. Read: a summary is checked where it is read (``load_summary``):
one whose numbers are missing, not finite or out of their range is a SummaryError naming the file and the
field; reports leave it out and name it once, and a finished run is not reused from it."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rigl_repro.errors import ConfigError

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
PRUNED_FILE = "pruned.json"  # in a run folder: a sweep's pruner stopped the run there (rigl_repro.sweeps.trial)


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


def write_failure(path: Path | str, error: OSError) -> OutputError:
    """The one-line error of a file that could not be written, naming it, the reason and what to do."""
    return OutputError(
        f"{path} could not be written ({error.strerror or error}); free some space or fix the folder's "
        "permissions, then run the same command again"
    )


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; it replaces ``path`` when the block ends, so
    ``path`` is the old file or the complete new one, never half of one. On failure it is removed, and an
    OSError (no folder, a read-only one, a full disk) becomes an OutputError naming ``path``."""
    path = Path(path)
    try:  # a folder that cannot be made or written to fails here, before any temporary exists
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(descriptor)
    except OSError as error:
        raise write_failure(path, error) from None
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, new_file_mode())
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # on disk before the rename: "old or whole" survives a power cut too
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise write_failure(path, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON through ``atomic_file``."""
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_figure(figure: Any, path: Path, **options: Any) -> None:
    """Save a matplotlib ``figure`` to ``path`` in the format its suffix names, through ``atomic_file``. The
    format is passed explicitly: the temporary file's name ends in a random suffix, not the format's."""
    with atomic_file(path) as temporary:
        figure.savefig(temporary, format=Path(path).suffix.removeprefix("."), **options)


class SummaryError(ConfigError):
    """A ``summary.json`` that cannot be read or is not a run's summary."""


@dataclass(frozen=True)
class Metric:
    """A number of a run's summary that reports, sweeps or a reused run read, and the values it may take.

    ``path`` is dotted; ``*`` stands for every item of a list or every value of a dict. A missing field is
    valid unless ``required`` (older summaries lack the newer fields, and readers skip what is missing).
    """

    path: str
    low: float = 0.0
    high: float = 1.0
    integer: bool = False
    required: bool = False
    nullable: bool = False  # None is valid: e.g. val_acc of a run without a validation split

    def expected(self) -> str:
        """The values this field takes, in words, for the error message."""
        if self.integer:
            kind = f"an integer >= {self.low:g}"
        elif math.isfinite(self.high):
            kind = f"a number in [{self.low:g}, {self.high:g}]"
        else:
            kind = f"a finite number >= {self.low:g}"
        return kind + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (as JSON read it) is one this field takes."""
        if value is None:
            return self.nullable
        number = isinstance(value, int) or (isinstance(value, float) and not self.integer)
        if isinstance(value, bool) or not number:  # JSON true/false are not numbers, nor 3.0 a step count
            return False
        return math.isfinite(value) and self.low <= value <= self.high  # NaN compares False


UNBOUNDED = math.inf
# Every number a reader takes from a summary: accuracies and densities are fractions, FLOPs are relative to
# the dense 1x run (a longer run exceeds 1), times, steps and epochs are non-negative.
SUMMARY_METRICS: tuple[Metric, ...] = (
    Metric("test_acc", required=True),
    Metric("val_acc", required=True, nullable=True),
    Metric("density", required=True),
    Metric("train_acc"),
    Metric("density_all_layers"),
    Metric("initial_density"),
    Metric("exploration"),
    Metric("layer_densities.*"),
    Metric("layer_exploration.*"),
    Metric("flops.train_relative", high=UNBOUNDED),
    Metric("flops.inference_relative", high=UNBOUNDED),
    Metric("flops.trajectory.*.*", high=UNBOUNDED),
    Metric("wall_time_s", high=UNBOUNDED),
    Metric("epochs", high=UNBOUNDED, integer=True),
    Metric("history.*.val_acc", nullable=True),
    Metric("history.*.train_acc"),
    Metric("history.*.step", high=UNBOUNDED, integer=True),
    Metric("history.*.epoch", high=UNBOUNDED, integer=True),
    Metric("history.*.mask_updates.*.step", high=UNBOUNDED, integer=True),
    Metric("history.*.mask_updates.*.replaced", high=UNBOUNDED),
    Metric("history.*.mask_updates.*.exploration"),
)


def children(value: Any, key: str) -> list[tuple[Any, Any]] | None:
    """The ``(key, item)`` pairs that ``key`` picks from ``value`` (``*``: all of them, a missing key: none),
    or None where ``value`` is not a dict (or, for ``*``, a list) to pick from."""
    if isinstance(value, dict):
        if key == "*":
            return list(value.items())
        return [(key, value[key])] if key in value else []
    if key == "*" and isinstance(value, list):
        return list(enumerate(value))
    return None


def fields_at(value: Any, parts: Sequence[str], prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """``(dotted path, value, whole)`` of every field that ``parts`` (a Metric's path, split) names in
    ``value``. ``whole`` is False where the path needs a dict or list but ``value`` holds something else there,
    which is yielded too, so that it is reported."""
    picked = children(value, parts[0]) if parts else None
    if picked is None:
        yield prefix.rstrip("."), value, not parts
        return
    for key, item in picked:
        yield from fields_at(item, parts[1:], f"{prefix}{key}.")


def shown(value: Any, limit: int = 40) -> str:
    """``value`` as the summary's JSON spells it (null, NaN, "0.9"), cut to ``limit`` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summary_problem(summary: dict[str, Any]) -> str | None:
    """What is wrong with a summary's numbers (the first field that is missing or invalid), or None."""
    for metric in SUMMARY_METRICS:
        parts = metric.path.split(".")
        if metric.required and parts[0] not in summary:
            return f"has no {metric.path}"
        for field, value, whole in fields_at(summary, parts):
            if not whole:
                return f"has {field}={shown(value)}, not a list or dict of fields"
            if not metric.accepts(value):
                return f"has {field}={shown(value)}, not {metric.expected()}"
    return None


def check_summary(summary: Any, source: Path | str) -> dict[str, Any]:
    """``summary`` if it is a run's summary with valid numbers, else a SummaryError naming ``source`` and the
    field: a report counts only valid values, and a reused run never returns a wrong result."""
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise SummaryError(f"{source} is not a run summary (no config); delete it to train that run again")
    problem = summary_problem(summary)
    if problem is not None:
        raise SummaryError(f"{source} {problem}; delete it to train that run again")
    return summary


def load_summary(path: Path) -> dict[str, Any]:
    """The summary in ``path``; a SummaryError, naming the file and what to do, if it is not one."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error.__class__.__name__
        raise SummaryError(f"{path} cannot be read ({reason})") from None
    except ValueError as error:
        raise SummaryError(f"{path} is not valid JSON ({error}); delete it to train that run again") from None
    return check_summary(summary, path)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run's summary, or None if the run has not finished."""
    path = Path(run_dir) / SUMMARY_FILE
    return load_summary(path) if path.is_file() else None


def warn_left_out(problems: Sequence[str]) -> None:
    """Name, once and together, the runs a report leaves out."""
    if problems:
        log.warning("left out %d unreadable or invalid run(s):\n  %s", len(problems), "\n  ".join(problems))


def collect_summaries(root: Path) -> list[dict[str, Any]]:
    """Every finished run's summary below ``root``, each with its ``run_dir``, in path order. Unreadable or
    invalid summaries are listed in a warning and left out: one broken file does not stop a report. A folder
    marked pruned is left out too: its run did not finish as configured."""
    summaries, unreadable = [], []
    for path in sorted(Path(root).rglob(SUMMARY_FILE)):
        if (path.parent / PRUNED_FILE).exists():
            continue
        try:
            summary = load_summary(path)
        except SummaryError as error:
            unreadable.append(str(error))
            continue
        summary["run_dir"] = str(path.parent)
        summaries.append(summary)
    warn_left_out(unreadable)
    return summaries


def exit_on_output_error(main: Callable[[], None]) -> None:
    """Run a script's ``main``; a file it cannot write (an OutputError) or any other operating-system error (a
    folder it cannot read, a network that is down) ends it with one line ``error: ...`` and exit code 2, as a
    run's bad configuration does, instead of a traceback. Only an OutputError says how to free a write."""
    try:
        main()
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        raise SystemExit(2) from None
