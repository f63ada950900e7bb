"""What mask structure costs in accuracy: a table and a figure from the runs of ``experiment=structured`` and
``experiment=structured_nm`` (``make structured``; docs/structured.md).

    python scripts/structured_report.py outputs/structured [--out-dir outputs/report/structured]

For each method (static, SET, RigL), the test accuracy (mean +- sample std over seeds) of unstructured masks
against constant fan-in at density 0.1 and against 2:4 at density 0.5, and the difference of the means.
Seeds are pooled within one configuration only (``rigl_repro.reporting.runs.group_by_configuration``); any
other configuration below the folder gets a row of its own, labelled by what differs.
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

from rigl_repro.reporting.runs import Configuration, group_by_configuration  # noqa: E402
from rigl_repro.results import atomic_file, collect_summaries, exit_on_output_error, write_figure  # noqa: E402

METHODS = ("static", "set", "rigl", "srigl")
NAMES = {"static": "Static", "set": "SET", "rigl": "RigL", "srigl": "SRigL"}
# (column title, structure, requested density) in table order; each comparison is (unstructured, structured).
COMPARISONS = (
    (("unstructured, d=0.1", "unstructured", 0.1), ("constant fan-in, d=0.1", "fan_in", 0.1)),
    (("unstructured, d=0.5", "unstructured", 0.5), ("2:4, d=0.5", "nm", 0.5)),
)


def cell_key(summary: dict) -> tuple[str, str, float]:
    """(method, structure, requested density) of a run; an N:M run's density is n/m whatever it asked."""
    masking = summary["config"]["masking"]
    structure = masking.get("structure", "unstructured")
    density = masking["n"] / masking["m"] if structure == "nm" else masking["density"]
    return masking["name"], structure, round(float(density), 6)


def accuracies(group: Configuration) -> list[float]:
    return [100 * run["test_acc"] for run in group.runs]


def spread(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {statistics.stdev(values):.1f} ({len(values)})"


def difference(structured: list[float], unstructured: list[float]) -> str:
    if not structured or not unstructured:
        return "–"
    return f"{statistics.fmean(structured) - statistics.fmean(unstructured):+.1f}"


def table(groups: dict[tuple, Configuration]) -> list[str]:
    header = ["Method"]
    for (plain, _, _), (structured, _, _) in COMPARISONS:
        header += [plain, structured, "Δ"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in METHODS:
        row, any_run = [NAMES[method]], False
        for (_, plain, density), (_, structure, _) in COMPARISONS:
            base = accuracies(groups[(method, plain, density)]) if (method, plain, density) in groups else []
            other = accuracies(groups[(method, structure, density)]) if (method, structure, density) in groups else []
            any_run |= bool(base or other)
            row += [spread(base), spread(other), difference(other, base)]
        if any_run:
            lines.append("| " + " | ".join(row) + " |")
    return lines


def figure(groups: dict[tuple, Configuration], path: Path) -> None:
    fig, axes = plt.subplots(1, len(COMPARISONS), figsize=(10, 4), sharey=False)
    for axis, comparison in zip(axes, COMPARISONS):
        methods = [m for m in METHODS if any((m, s, d) in groups for _, s, d in comparison)]
        for offset, (title, structure, density) in zip((-0.2, 0.2), comparison):
            values = [accuracies(groups[(m, structure, density)]) if (m, structure, density) in groups else []
                      for m in methods]  # fmt: skip
            means = [statistics.fmean(v) if v else float("nan") for v in values]
            errors = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            axis.bar([i + offset for i in range(len(methods))], means, 0.38, yerr=errors, capsize=3, label=title)
        axis.set_xticks(range(len(methods)), [NAMES[m] for m in methods])
        finite = [b.get_height() for b in axis.patches if b.get_height() == b.get_height()]
        if finite:
            axis.set_ylim(min(finite) - 2.0, max(finite) + 1.0)
        axis.set(ylabel="test accuracy (%)")
        axis.grid(axis="y", alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    fig.suptitle("Fashion-MNIST, LeNet-5: unstructured against structured masks (mean ± std over seeds)")
    write_figure(fig, path, dpi=120, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--out-dir", type=Path, default=None, help="default: ROOT")
    args = parser.parse_args()
    out_dir = args.out_dir or args.root
    summaries = [s for s in collect_summaries(args.root) if s["config"]["masking"]["name"] in METHODS]
    if not summaries:
        raise SystemExit(f"error: no finished static, SET, RigL or SRigL run (summary.json) below {args.root}")
    groups: dict[tuple, Configuration] = {}
    others = []
    for group in group_by_configuration(summaries, cell_key):
        if group.differs and group.key in groups:
            others.append(group)  # another configuration with the same cell: reported apart, never pooled
        else:
            groups[group.key] = group
    lines = table(groups)
    if others:
        lines += ["", "Other configurations below the folder (not in the table):", ""]
        lines += [f"- {group.label(' '.join(map(str, group.key)))}: {spread(accuracies(group))}" for group in others]
    text = "\n".join(lines) + "\n"
    print(text)
    with atomic_file(out_dir / "structured.md") as temporary:
        temporary.write_text(text)
    figure(groups, out_dir / "structured.png")
    print(f"table: {out_dir / 'structured.md'}\nfigure: {out_dir / 'structured.png'}")


if __name__ == "__main__":
    exit_on_output_error(main)  # a file that cannot be written: one line `error: ...`, exit code 2
