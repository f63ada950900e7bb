"""Compare the finished runs below a folder: a table on the console (mean +- std over seeds when a method
has several) and a plot of validation accuracy over training, one line per method.

    python scripts/demo_report.py outputs/demo          # writes outputs/demo/accuracy.png

``density`` is the density over the budgeted layers (summary.json's ``density``, the target's; Uniform keeps
the first layer dense, outside the budget: ``scripts/mask_dynamics.py`` shows the density over every masked
layer beside it). Seeds are pooled within one configuration only (the run's identity without its seed): a
method whose runs below the folder differ in another option (a learning rate, a sweep trial) gets a row and
a line per configuration, labelled by the options that differ.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rigl_repro.reporting.runs import Configuration, group_by_configuration  # noqa: E402
from rigl_repro.results import collect_summaries, exit_on_output_error, write_figure  # noqa: E402

ORDER = ("dense", "small_dense", "static", "set", "rigl", "snfs", "pruning", "lottery")


def label(summary: dict) -> str:
    masking = summary["config"]["masking"]
    if masking["name"] in ("dense", "small_dense"):
        return masking["name"]
    return f"{masking['name']} ({masking['distribution']})"


def spread(values: list[float]) -> str:
    """Mean, and +- the sample standard deviation when there are several values."""
    mean = statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {statistics.stdev(values):.1f}"


def plot_path(plot: Path) -> Path:
    """``--plot`` as the file it names: with no suffix, PNG (as matplotlib would save it); a suffix matplotlib
    cannot write ends the script in one line, before any work."""
    if not plot.suffix:
        return plot.with_name(plot.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if plot.suffix[1:] not in formats:
        print(f"error: --plot {plot} has an unknown format; end it in one of: {', '.join(sorted(formats))}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return plot


def order(method: Configuration) -> tuple:
    """Methods in ``ORDER``, then by label, density (densest first) and what sets a configuration apart."""
    text, density = method.key
    name = text.split(" ")[0]
    return (ORDER.index(name) if name in ORDER else len(ORDER), text, -density, method.differs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--plot", type=Path, default=None, help="PNG to write (default: ROOT/accuracy.png)")
    args = parser.parse_args()
    plot = plot_path(args.plot or args.root / "accuracy.png")
    summaries = collect_summaries(args.root)
    if not summaries:
        raise SystemExit(f"error: no finished run (summary.json) below {args.root}")
    # seeds of one configuration, keyed by method and density
    methods = sorted(group_by_configuration(summaries, lambda s: (label(s), s["density"])), key=order)
    width = max(18, *(len(method.label(method.key[0])) for method in methods))

    print(f"\n{'method':<{width}} {'seeds':>5} {'test acc (%)':>13} {'val acc (%)':>12} {'density':>8} "
          f"{'epochs':>7} {'time (s)':>9}")  # fmt: skip
    for method in methods:
        runs = method.runs
        vals = [100 * run["val_acc"] for run in runs if run["val_acc"] is not None]
        print(
            f"{method.label(method.key[0]):<{width}} {len(runs):5d} "
            f"{spread([100 * run['test_acc'] for run in runs]):>13} {spread(vals) if vals else '-':>12} "
            f"{runs[0]['density']:8.3f} {runs[0]['epochs']:7d} "
            f"{statistics.fmean(run['wall_time_s'] for run in runs):9.1f}"
        )
    repeats = sum(method.repeats for method in methods)
    if repeats:
        print(f"note: {repeats} runs repeat the configuration and seed of another run below {args.root}; each seed "
              "is counted once (the first found)")  # fmt: skip

    figure, axis = plt.subplots(figsize=(7, 4.5))
    several_densities = len({method.key[1] for method in methods if method.key[1] < 1}) > 1
    for method in methods:
        histories = [[e for e in run["history"] if e["val_acc"] is not None] for run in method.runs]
        epochs = [e["epoch"] for e in min(histories, key=len)]  # the epochs every seed has
        means = [statistics.fmean(100 * h[i]["val_acc"] for h in histories) for i in range(len(epochs))]
        text, density = method.key
        name = method.label(f"{text} at {density:.3g}" if several_densities else text)
        axis.plot(epochs, means, marker="o", markersize=3, label=f"{name} ({means[-1]:.1f}%)" if means else name)
    first = summaries[0]["config"]
    density = next((run["config"]["masking"]["density"] for run in summaries if run["density"] < 1), None)
    title = f"{first['dataset']['name']}, {first['model']['name']}" + (f", density {density}" if density else "")
    axis.set(xlabel="epoch", ylabel="validation accuracy (%)", title=title + ": accuracy over training")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend()
    write_figure(figure, plot, dpi=120, bbox_inches="tight")
    print(f"\nplot: {plot}")


if __name__ == "__main__":
    exit_on_output_error(main)  # a file that cannot be written: one line `error: ...`, exit code 2
