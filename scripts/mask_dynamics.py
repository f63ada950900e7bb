"""How much of the network the masks explored, for the finished runs below a folder: a table and a figure.

    python scripts/mask_dynamics.py outputs/demo        # writes outputs/demo/mask_dynamics.png and .pdf

For every configuration (mean over its seeds): the in-time over-parameterisation rate at the end (the
fraction of the masked layers' weights that were active at least once; Liu et al. 2021 show final accuracy
tracks it), the density (over the budgeted layers, as in summary.json and the demo report), the density over
every masked layer (where exploration starts: Uniform keeps the first layer dense, outside the budget) and
the fraction of active weights the first and last topology updates replaced. Static stays at its density;
SET and RigL climb; RigL's turnover decays with its cosine schedule.

Seeds are pooled within one configuration only (the run's identity without its seed): runs that share a
method, distribution and density but differ in another option (a sweep trial, another learning rate) are
rows of their own, labelled by the options that differ (docs/mask_dynamics.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from rigl_repro.reporting.figures import mask_dynamics_figure, run_label  # noqa: E402
from rigl_repro.reporting.runs import Configuration, group_by_configuration  # noqa: E402
from rigl_repro.results import collect_summaries, exit_on_output_error  # noqa: E402


def mean_of(runs: list[dict], key: str) -> str:
    """The mean of a summary's number over ``runs``, to 3 decimals; ``-`` where a run lacks it (a summary
    written before the number was recorded)."""
    values = [run.get(key) for run in runs]
    return "-" if None in values else f"{statistics.fmean(values):.3f}"


def dynamics_rows(groups: list[Configuration]) -> list[tuple[str, int, str, str, str, str, str]]:
    """One row per configuration (``group_by_configuration`` by ``run_label``), in label order: its label, seed
    count, ever-active fraction, ``density`` (budgeted), ``density_all_layers``, and the fraction the first and
    last topology updates replaced, each a mean over the configuration's seeds."""
    rows = []
    for group in sorted(groups, key=lambda group: (group.key, group.differs)):
        runs = group.runs
        updates = [[u for epoch in run["history"] for u in epoch["mask_updates"]] for run in runs]
        first, last = (
            (f"{statistics.fmean(u[0]['replaced'] for u in updates):.3f}",
             f"{statistics.fmean(u[-1]['replaced'] for u in updates):.3f}")
            if all(updates) else ("-", "-")
        )  # fmt: skip
        rows.append((group.label(group.key), len(runs), mean_of(runs, "exploration"), mean_of(runs, "density"),
                     mean_of(runs, "density_all_layers"), first, last))  # fmt: skip
    return rows


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

    groups = group_by_configuration(sparse, run_label)
    rows = dynamics_rows(groups)
    width = max(26, *(len(row[0]) for row in rows))
    print(f"\n{'configuration':<{width}} {'seeds':>5} {'ever active':>12} {'density':>8} {'density_all_layers':>18} "
          f"{'replaced: first':>16} {'last':>7}")  # fmt: skip
    for label, seeds, explored, density, all_layers, first, last in rows:
        print(f"{label:<{width}} {seeds:5d} {explored:>12} {density:>8} {all_layers:>18} {first:>16} {last:>7}")
    if any(group.differs for group in groups):
        print("\nA row whose label goes on after the density is one of several configurations of that method and "
              "density: it pools its own seeds only, and its label names the options in which they differ.")
    repeats = sum(group.repeats for group in groups)
    if repeats:
        print(f"note: {repeats} runs repeat the configuration and seed of another run below {args.root}; each seed "
              "is counted once (the first found)")  # fmt: skip
    paths = mask_dynamics_figure(sparse, args.out or args.root)
    print(f"\nfigure: {paths[0]}")


if __name__ == "__main__":
    exit_on_output_error(main)  # a file that cannot be written: one line `error: ...`, exit code 2
