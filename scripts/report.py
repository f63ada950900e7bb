"""Rebuild the report's tables and figures from finished runs.

    python scripts/report.py table2 fig1 --scale smoke          # runs under outputs/smoke
    python scripts/report.py all --scale paper --root /scratch/runs --out outputs/report/paper

Tables are written as Markdown, LaTeX and CSV, figures as PNG and PDF, into ``--out`` (default
``outputs/report/<scale>``). Runs are matched to cells by their configuration; missing runs show as
missing cells with their seed count. At a scale whose experiments train another dataset or model than the
report's (smoke: small_cnn on digits), every title says what ran and what the paper ran, and no table shows
the report's values or our differences from them. Every file is written whole or not at all; one that cannot be written
(a full disk, a read-only folder) stops the script with one line and exit code 2, the previous file intact.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.reporting.figures import FIGURES  # noqa: E402
from rigl_repro.reporting.runs import RunIndex  # noqa: E402
from rigl_repro.reporting.tables import TABLE_NAMES, write_table  # noqa: E402
from rigl_repro.results import exit_on_output_error  # noqa: E402

TARGETS = [*TABLE_NAMES, *FIGURES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", choices=[*TARGETS, "all"], metavar="TARGET",
                        help=f"one or more of: {', '.join(TARGETS)}, all")  # fmt: skip
    parser.add_argument("--scale", choices=["paper", "smoke"], default="paper")
    parser.add_argument("--root", default=None, help="the output_root of the runs (default: outputs/<scale>)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: outputs/report/<scale>)")
    args = parser.parse_args()
    root = Path(args.root or Path("outputs") / args.scale)
    out = args.out or Path("outputs") / "report" / args.scale
    if not root.is_dir():
        sys.exit(f"error: no runs at {root}; run the experiments first (e.g. make table2 SCALE={args.scale})")
    index = RunIndex(root, args.scale, output_root=args.root)
    targets = TARGETS if "all" in args.targets else args.targets
    print(f"{len(index.summaries)} finished runs under {root}")
    for target in targets:
        paths = write_table(target, index, out) if target in TABLE_NAMES else FIGURES[target](index, out)
        print(f"{target}: " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    exit_on_output_error(main)  # a file that cannot be written: one line `error: ...`, exit code 2
