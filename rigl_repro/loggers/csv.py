"""``logger=csv``: the run's curves and final numbers as CSV files in the run folder, for spreadsheets and
pandas, with no account, service or extra package.

- ``history.csv``: one row per epoch: ``epoch, step, train_loss, train_acc, val_acc, lr, density,
  exploration, images_per_s`` (then any other number the epoch holds: ``density_all_layers``, numbers a newer
  trainer adds), then ``density/<layer>``.
- ``mask_updates.csv``: one row per topology update: ``step, replaced, exploration, replaced/<layer>``.
- ``summary.csv``: ``key,value`` rows of the final numbers, nested dicts flattened with dots
  (``flops.train_relative``, ``layer_densities.<layer>``), lists as JSON; written when the run ends.

Each file is rewritten whole through ``results.atomic_file`` whenever it changes (they are small): a killed
run leaves the previous complete file, never half of one. A resumed run starts by rewriting the history it
resumes from, so the files always hold the checkpoint's epochs, each once, as ``summary.json`` will. A file
that cannot be written (a full disk, a read-only folder) is one OutputError line, the previous file intact.

Why not append a row per epoch: a kill mid-append leaves a partial last line, which ``csv.DictReader`` and
pandas read as a short row of wrong values rather than refuse, and a new column (a layer, a number a newer
trainer adds) would need the header rewritten anyway. Rewriting files of a few hundred rows costs nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from rigl_repro.loggers.base import Logger, RunLabels
from rigl_repro.results import atomic_file, write_failure

HISTORY_FILE = "history.csv"
MASK_UPDATES_FILE = "mask_updates.csv"
SUMMARY_CSV_FILE = "summary.csv"
EPOCH_COLUMNS = ("epoch", "step", "train_loss", "train_acc", "val_acc", "lr", "density", "exploration",
                 "images_per_s")  # fmt: skip
UPDATE_COLUMNS = ("step", "replaced", "exploration")
NESTED = ("layer_densities", "mask_updates")  # spread over columns of their own, or over mask_updates.csv


def cell(value: Any) -> Any:
    """A value as the csv module should write it: None as an empty cell, lists and dicts as JSON text."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` for every leaf of nested dicts, in their order."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def first_seen(names: Iterable[str]) -> list[str]:
    """``names`` without repeats, in the order they first appear."""
    return list(dict.fromkeys(names))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Replace ``path`` by a CSV file of ``header`` and ``rows``, atomically (a failure is one line)."""
    with atomic_file(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows([cell(value) for value in row] for row in rows)


class CsvLogger(Logger):
    """Keeps every epoch logged so far and rewrites the run folder's CSV files from them (module docstring).

    ``history`` is the checkpoint's epochs: the files are rewritten from it at once, dropping any epochs a
    killed run logged after its last checkpoint (they are trained, and logged, again). A stale
    ``summary.csv`` is removed, so that it exists only once the run has ended.
    """

    name: ClassVar[str] = "csv"
    # W&B's setting, which scale=smoke sets (to disabled) whatever logger is chosen: it says nothing about files,
    # so `scale=smoke logger=csv` writes them.
    ignored: ClassVar[tuple[str, ...]] = ("mode",)

    def __init__(
        self,
        config: Mapping[str, Any],
        output_dir: Path,
        history: Sequence[Mapping[str, Any]] = (),
        labels: RunLabels | None = None,  # the folder is the run's own: nothing to name or group
    ):
        self.output_dir = Path(output_dir)
        self.epochs = [dict(entry) for entry in history]
        self.final: dict[str, Any] = {}
        self.write_history()
        stale = self.output_dir / SUMMARY_CSV_FILE
        try:
            stale.unlink(missing_ok=True)
        except OSError as error:  # as for a write: one line, not a traceback
            raise write_failure(stale, error) from None

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """An epoch's entry (it has an ``epoch``) becomes a row of the history; anything else (the final
        ``test_acc``) is a final number, for ``summary.csv``."""
        if "epoch" in metrics:
            self.epochs.append(dict(metrics))
            self.write_history()
        else:
            self.final.update(metrics)
            self.write_summary()

    def summarize(self, summary: Mapping[str, Any]) -> None:
        self.final.update(summary)
        self.write_summary()

    def finish(self) -> None:
        """Nothing to close: every file is complete as soon as it is written."""

    def write_history(self) -> None:
        layers = first_seen(name for entry in self.epochs for name in entry.get("layer_densities", {}))
        extra = first_seen(
            key for entry in self.epochs for key, value in entry.items()
            if key not in EPOCH_COLUMNS and key not in NESTED and not isinstance(value, (Mapping, list, tuple))
        )  # fmt: skip
        columns = [*EPOCH_COLUMNS, *extra]
        rows = (
            [entry.get(key) for key in columns] + [entry.get("layer_densities", {}).get(name) for name in layers]
            for entry in self.epochs
        )
        write_csv(self.output_dir / HISTORY_FILE, [*columns, *(f"density/{name}" for name in layers)], rows)

        updates = []
        for entry in self.epochs:
            names = list(entry.get("layer_densities", {}))  # an update's layer_replaced is in this order
            for update in entry.get("mask_updates", ()):
                replaced = dict(zip(names, update.get("layer_replaced", ())))
                updates.append([update.get(key) for key in UPDATE_COLUMNS] + [replaced.get(name) for name in layers])
        write_csv(self.output_dir / MASK_UPDATES_FILE, [*UPDATE_COLUMNS, *(f"replaced/{name}" for name in layers)],
                  updates)  # fmt: skip

    def write_summary(self) -> None:
        write_csv(self.output_dir / SUMMARY_CSV_FILE, ["key", "value"], flatten(self.final))
