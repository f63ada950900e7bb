"""Compare the finished runs below a folder: a table on the console and a plot of validation accuracy over
training, one line per run.

    python scripts/demo_report.py outputs/demo          # writes outputs/demo/accuracy.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402

from rigl_repro.results import collect_summaries  # noqa: E402


def label(summary: dict) -> str:
    masking = summary["config"]["masking"]
    if masking["name"] in ("dense", "small_dense"):
        return masking["name"]
    return f"{masking['name']} ({masking['distribution']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--plot", type=Path, default=None, help="PNG to write (default: ROOT/accuracy.png)")
    args = parser.parse_args()
    summaries = collect_summaries(args.root)
    if not summaries:
        raise SystemExit(f"error: no finished run (summary.json) below {args.root}")

    print(f"\n{'method':<16} {'test acc':>9} {'val acc':>9} {'density':>8} {'epochs':>7} {'time (s)':>9}")
    for summary in summaries:
        val = "-" if summary["val_acc"] is None else f"{100 * summary['val_acc']:.1f}%"
        print(
            f"{label(summary):<16} {100 * summary['test_acc']:8.1f}% {val:>9} {summary['density']:8.3f} "
            f"{summary['epochs']:7d} {summary['wall_time_s']:9.1f}"
        )

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for summary in summaries:
        history = [entry for entry in summary["history"] if entry["val_acc"] is not None]
        axis.plot([e["epoch"] for e in history], [100 * e["val_acc"] for e in history], label=label(summary))
    dataset = summaries[0]["config"]["dataset"]["name"]
    axis.set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"{dataset}: accuracy over training")
    axis.grid(alpha=0.3)
    axis.legend()
    plot = args.plot or args.root / "accuracy.png"
    figure.savefig(plot, dpi=120, bbox_inches="tight")
    print(f"\nplot: {plot}")


if __name__ == "__main__":
    main()
