"""How much of the network the masks explored, for the finished runs below a folder: a table and a figure.

    python scripts/mask_dynamics.py outputs/demo        # writes outputs/demo/mask_dynamics.png and .pdf

For every method (mean over seeds): the in-time over-parameterisation rate at the end (the fraction of the
masked layers' weights that were active at least once; Liu et al. 2021 show final accuracy tracks it) and
the fraction of active weights the first and last topology updates replaced. Static stays at its density;
SET and RigL climb; RigL's turnover decays with its cosine schedule.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.reporting.figures import mask_dynamics_figure, run_label  # noqa: E402
from rigl_repro.results import collect_summaries, exit_on_output_error  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="a folder of finished runs (summary.json files below it)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the figure (default: ROOT)")
    args = parser.parse_args()
    summaries = collect_summaries(args.root)
    recorded = [summary for summary in summaries if "exploration" in summary]
    if len(recorded) < len(summaries):
        print(f"warning: {len(summaries) - len(recorded)} runs below {args.root} finished before mask dynamics "
              "were recorded; they are left out (train them again to include them)", file=sys.stderr)  # fmt: skip
    sparse = [summary for summary in recorded if summary["config"]["masking"]["name"] not in ("dense", "small_dense")]
    if not sparse:
        raise SystemExit(f"error: no finished sparse run with mask dynamics below {args.root}")

    groups: dict[str, list[dict]] = {}
    for summary in sparse:
        groups.setdefault(run_label(summary), []).append(summary)
    print(f"\n{'method':<26} {'seeds':>5} {'ever active':>12} {'density':>8} {'replaced: first':>16} {'last':>7}")
    for label, runs in sorted(groups.items()):
        updates = [[u for epoch in run["history"] for u in epoch["mask_updates"]] for run in runs]
        first, last = (
            (f"{statistics.fmean(u[0]['replaced'] for u in updates):.3f}",
             f"{statistics.fmean(u[-1]['replaced'] for u in updates):.3f}")
            if all(updates) else ("-", "-")
        )  # fmt: skip
        print(f"{label:<26} {len(runs):5d} {statistics.fmean(run['exploration'] for run in runs):12.3f} "
              f"{statistics.fmean(run['density_all_layers'] for run in runs):8.3f} {first:>16} {last:>7}")  # fmt: skip
    paths = mask_dynamics_figure(sparse, args.out or args.root)
    print(f"\nfigure: {paths[0]}")


if __name__ == "__main__":
    exit_on_output_error(main)  # a file that cannot be written: one line `error: ...`, exit code 2
