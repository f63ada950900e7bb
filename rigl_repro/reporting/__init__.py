"""The report's published numbers and, later, the tables and figures rebuilt from our runs."""

from __future__ import annotations

import csv
from pathlib import Path

PUBLISHED_FLOPS = Path(__file__).with_name("published_flops.csv")


def published_flops() -> list[dict[str, str]]:
    """Every FLOP cell of the report's Tables 2, 3 and 5, one row per (table, row, density), with the
    configuration that reproduces it and whether it is determined analytically (``analytic``: the
    method's layer densities never change) or only by a full run's trajectory."""
    with open(PUBLISHED_FLOPS, newline="") as handle:
        return list(csv.DictReader(handle))
