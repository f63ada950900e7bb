"""The report's published numbers, and the tables and figures rebuilt from our runs."""

from __future__ import annotations

import csv
from pathlib import Path

PUBLISHED = Path(__file__).with_name("published.csv")


def published() -> list[dict[str, str]]:
    """Every number of the report's Tables 1-5, one row per (table, dataset, row, density): ``accuracy`` and
    ``std`` (test, %), ``train_flops``/``test_flops`` (relative; absolute for the dense baselines),
    ``analytic`` (whether the FLOPs follow from the configuration alone, or only from a run's trajectory),
    ``reference_accuracy`` (Table 1: Evci et al.'s figure) and ``alpha``/``delta_t`` (Table 4). ``variant``
    names the ``conf/variant`` config that reproduces the row."""
    with open(PUBLISHED, newline="") as handle:
        return list(csv.DictReader(handle))


def published_flops() -> list[dict[str, str]]:
    """The rows of ``published()`` that carry FLOP cells (Tables 2, 3 and 5)."""
    return [row for row in published() if row["train_flops"]]
