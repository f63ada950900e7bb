"""Run results on disk: every run's ``summary.json``, the one source that report scripts read."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"
IDENTITY_KEYS = ("dataset", "model", "masking", "train", "seed")
# Training options that change how fast a run goes, not what it computes (same optimizer, schedule, data
# and masks), so a run may resume, and counts in its table cell, under any of their values.
EXECUTION_OPTIONS = ("amp", "channels_last", "compile", "eval_batch_size")
# Dataset options that say where the data are found, not what they are (the files are checked either way).
DATA_LOCATION_OPTIONS = ("root", "system_root", "download", "raw_md5")


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run's resolved configuration that determines its results: a checkpoint resumes, a
    finished run is reused and a run fills a table cell only under the same identity."""
    identity = {key: config.get(key) for key in IDENTITY_KEYS}
    if isinstance(identity["train"], Mapping):
        identity["train"] = {k: v for k, v in identity["train"].items() if k not in EXECUTION_OPTIONS}
    if isinstance(identity["dataset"], Mapping):
        identity["dataset"] = {k: v for k, v in identity["dataset"].items() if k not in DATA_LOCATION_OPTIONS}
    return identity


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that ``path`` is either the old file or the complete new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        temporary = Path(handle.name)
    os.replace(temporary, path)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """A run's summary, or None if the run has not finished."""
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def collect_summaries(root: Path) -> list[dict[str, Any]]:
    """Every finished run's summary below ``root``, each with its ``run_dir``, in path order."""
    summaries = []
    for path in sorted(Path(root).rglob(SUMMARY_FILE)):
        summary = json.loads(path.read_text())
        summary["run_dir"] = str(path.parent)
        summaries.append(summary)
    return summaries
