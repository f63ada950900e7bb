"""The report's Figures 1-4, the (alpha, delta_t) trial-space plots and the Fashion-MNIST experiment's figure,
rebuilt from runs (PNG and PDF). A figure whose experiments train another dataset or model than the report's
(``scale=smoke``: small_cnn on digits) says so in its title; runs of the report's keep its title as it was."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rigl_repro.reporting.runs import Provenance, RunIndex, Setting, group_by_configuration, provenance  # noqa: E402
from rigl_repro.results import write_figure  # noqa: E402
from rigl_repro.sparsity.distributions import layer_densities  # noqa: E402

LABELS = {
    "static": "Static", "set": "SET", "snfs": "SNFS", "rigl": "RigL", "pruning": "Pruning",
    "small_dense": "Small Dense",
    "static_erk": "Static", "set_erk": "SET", "snfs_erk": "SNFS", "rigl_erk": "RigL",
    "static_2x": "Static 2x", "set_2x": "SET 2x", "rigl_2x": "RigL 2x", "rigl_erk_2x": "RigL 2x (ERK)",
    "rigl_sg": "RigL-SG", "rigl_sm": "RigL-SM",
}  # fmt: skip
FIG1_DENSITIES = (0.05, 0.1, 0.2, 0.5)
FIG1_PANELS = (
    ("Random", ("static", "set", "snfs", "rigl", "pruning")),
    ("ERK", ("static_erk", "set_erk", "snfs_erk", "rigl_erk", "pruning")),
    ("2x longer", ("static_2x", "set_2x", "rigl_2x", "rigl_erk_2x", "pruning")),
)
FMNIST_DENSITIES = (0.05, 0.1, 0.2)
FMNIST_PANELS = (
    ("Random", ("small_dense", "static", "set", "snfs", "rigl")),
    ("ERK", ("small_dense", "static_erk", "set_erk", "snfs_erk", "rigl_erk")),
)
# The dataset and model the report (or, beyond it, the experiment's design) trained for each experiment.
WRN_CIFAR10, RESNET_CIFAR100 = Setting("cifar10", "wrn22_2"), Setting("cifar100", "resnet50")
LENET_FASHION_MNIST = Setting("fashion_mnist", "lenet5")
LR_VALUES = (0.1, 0.05, 0.01, 0.005)
HPARAM_PAIRS = ("a0.3_dt100", "a0.4_dt200", "a0.4_dt500", "a0.5_dt750")


def legend(axis, **options) -> None:
    """A legend, when the axis has something labelled (cells without runs draw nothing)."""
    if axis.get_legend_handles_labels()[0]:
        axis.legend(**options)


def density_axis(axis, densities: Sequence[float]) -> None:
    """A logarithmic density axis labelled at the densities that were run, and nowhere else."""
    axis.set(xscale="log", xlabel="density (1 - sparsity)")
    axis.minorticks_off()
    axis.set_xticks(densities, [str(d) for d in densities])


def save(figure: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``figure`` as ``name``.png and ``name``.pdf under ``out_dir``, and close it."""
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    try:
        for path in paths:
            write_figure(figure, path, dpi=150, bbox_inches="tight")
    finally:
        plt.close(figure)  # a failed write must not leave the figure open in a long session (notebooks)
    return paths


def errorbar_line(axis, xs: Sequence[float], cells, label: str, **style) -> None:
    """Mean +/- std over seeds against ``xs``; points with no finished run are left out of the line."""
    points = [(x, c.mean("test_acc"), c.std("test_acc")) for x, c in zip(xs, cells) if c.seeds]
    if points:
        x, y, err = zip(*points)
        axis.errorbar(x, y, yerr=[0 if math.isnan(e) else e for e in err], label=label, capsize=3, marker="o", **style)


def accuracy_against_density(
    index: RunIndex,
    experiment: str,
    panels: Sequence[tuple[str, Sequence[str]]],
    densities: Sequence[float],
    title: tuple[str, str],
    name: str,
    out_dir: Path,
    origin: Provenance,
) -> list[Path]:
    """Test accuracy (mean +- std over seeds) against density, one panel per group of variants, with the
    dense run of the same experiment as a horizontal line. ``title`` is the figure's heading and subject
    (``Figure 1``, ``test accuracy vs density``)."""
    dense = index.cell(experiment, ["variant=dense", "masking.density=1.0"])
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), sharey=True, squeeze=False)
    for axis, (panel, variants) in zip(axes[0], panels):
        for variant in variants:
            cells = [index.cell(experiment, [f"variant={variant}", f"masking.density={d}"]) for d in densities]
            style = "--" if variant in ("pruning", "small_dense") else "-"
            errorbar_line(axis, densities, cells, LABELS[variant], linestyle=style)
        if dense.seeds:
            axis.axhline(dense.mean("test_acc"), color="black", linestyle=":", label="Dense")
        density_axis(axis, densities)
        axis.set(title=panel)
        axis.grid(alpha=0.3)
        legend(axis, fontsize=8)
    axes[0][0].set_ylabel("test accuracy (%)")
    heading, subject = title
    faithful = f"{heading}: {subject}" if origin.published else subject[:1].upper() + subject[1:]
    faithful += f" ({dense.config['dataset']['name']}, {dense.config['model']['name']})"
    figure.suptitle(origin.title(faithful, heading, subject))
    return save(figure, out_dir, name)


def figure1(index: RunIndex, out_dir: Path) -> list[Path]:
    """The report's Figure 1: test accuracy against density on CIFAR-10, Random (left), ERK (centre), 2x
    longer (right)."""
    origin = provenance(index, [("fig1", WRN_CIFAR10)])
    title = ("Figure 1", "test accuracy vs density")
    return accuracy_against_density(index, "fig1", FIG1_PANELS, FIG1_DENSITIES, title, "fig1", out_dir, origin)


def fashion_mnist_figure(index: RunIndex, out_dir: Path) -> list[Path]:
    """The Fashion-MNIST experiment (beyond the report): test accuracy against density, Random (left) and ERK
    (right)."""
    origin = provenance(index, [("fmnist", LENET_FASHION_MNIST)], published=False)
    title = ("The Fashion-MNIST figure (beyond the report)", "test accuracy vs density")
    return accuracy_against_density(
        index, "fmnist", FMNIST_PANELS, FMNIST_DENSITIES, title, "fig_fmnist", out_dir, origin
    )


def figure2(index: RunIndex, out_dir: Path) -> list[Path]:
    """The report's Figure 2: best accuracy over the (alpha, delta_t) grid for each learning rate, against
    density."""
    densities = (0.1, 0.2, 0.5)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, (variant, title) in zip(axes, (("rigl", "Random"), ("rigl_erk", "ERK"))):
        for lr in LR_VALUES:
            best = []
            for density in densities:
                cells = [
                    index.cell("sweep_lr", [f"variant={variant}", f"rigl_hparams={pair}", f"train.lr={lr}",
                                            f"masking.density={density}"])  # fmt: skip
                    for pair in HPARAM_PAIRS
                ]
                finished = [cell for cell in cells if cell.seeds]
                best.append(max(finished, key=lambda c: c.mean("test_acc")) if finished else cells[0])
            errorbar_line(axis, densities, best, f"lr {lr}")
        density_axis(axis, densities)
        axis.set(title=f"RigL ({title})")
        axis.grid(alpha=0.3)
        legend(axis, fontsize=8)
    axes[0].set_ylabel("test accuracy (%), best (alpha, delta_t)")
    origin = provenance(index, [("sweep_lr", WRN_CIFAR10)])
    figure.suptitle(origin.title("Figure 2: learning rate vs density", "Figure 2", "learning rate vs density"))
    return save(figure, out_dir, "fig2")


def figure3(index: RunIndex, out_dir: Path) -> list[Path]:
    """The report's Figure 3: test accuracy against training FLOPs, Random vs ERK, for both datasets (panels
    titled by the dataset that ran, and the table whose runs they are where that is not the report's)."""
    origin = provenance(index, [("table2", WRN_CIFAR10), ("table3", RESNET_CIFAR100)])
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, experiment in zip(axes, ("table2", "table3")):
        for distribution, marker, suffix in (("Random", "o", ""), ("ERK", "s", "_erk")):
            for method in ("static", "set", "snfs", "rigl"):
                variant = f"variant={method}{suffix}"
                cells = [index.cell(experiment, [variant, f"masking.density={d}"]) for d in (0.1, 0.2)]
                points = [(c.mean("train_relative"), c.mean("test_acc")) for c in cells if c.seeds]
                if points:
                    x, y = zip(*points)
                    axis.plot(x, y, marker=marker, label=f"{LABELS[method]} ({distribution})")
        dataset = index.compose(experiment).dataset.name
        panel = dataset if origin.faithful else f"{dataset} (Table {experiment.removeprefix('table')}'s runs)"
        axis.set(xlabel="training FLOPs (relative to dense)", ylabel="test accuracy (%)", title=panel)
        axis.grid(alpha=0.3)
        legend(axis, fontsize=7)
    subject = "accuracy vs training FLOPs, Random vs ERK"
    figure.suptitle(origin.title(f"Figure 3: {subject}", "Figure 3", subject))
    return save(figure, out_dir, "fig3")


def figure4(index: RunIndex, out_dir: Path) -> list[Path]:
    """The report's Figure 4: redistribution at density 0.2 on CIFAR-10, inference FLOPs over training (left),
    and the final per-layer density of RigL-SG/SM against Random and ERK (right); seed 0 of each run."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    final = {}
    for variant in ("rigl", "rigl_sg", "rigl_sm"):
        cell = index.cell("table5_cifar10", [f"variant={variant}", "masking.density=0.2"])
        if cell.seeds:
            trajectory = cell.summaries[0]["flops"]["trajectory"]
            left.step([p[0] for p in trajectory], [p[1] for p in trajectory], where="post", label=LABELS[variant])
            final[variant] = cell.summaries[0]["layer_densities"]
    left.set(xlabel="training step", ylabel="inference FLOPs (relative to dense)", title="FLOPs during training")
    left.grid(alpha=0.3)
    legend(left)
    if final:
        shapes = {name: tuple(shape) for name, shape in shapes_of(index).items() if name in next(iter(final.values()))}
        names = list(shapes)  # model order
        series = {"Random": layer_densities("uniform", shapes, 0.2), "ERK": layer_densities("erk", shapes, 0.2)}
        series.update({LABELS[v]: densities for v, densities in final.items() if v != "rigl"})
        width = 0.8 / len(series)
        for offset, (label, densities) in enumerate(series.items()):
            positions = [i + offset * width for i in range(len(names))]
            right.bar(positions, [densities[n] for n in names], width, label=label)
        right.set_xticks(range(len(names)), [n.removesuffix(".weight") for n in names], rotation=90, fontsize=6)
        right.set(ylabel="density", title="final per-layer density")
        legend(right, fontsize=8)
    origin = provenance(index, [("table5_cifar10", WRN_CIFAR10)])
    subject = "effect of redistribution (density 0.2)"
    figure.suptitle(origin.title(f"Figure 4: {subject}", "Figure 4", subject))
    return save(figure, out_dir, "fig4")


def shapes_of(index: RunIndex) -> dict[str, tuple[int, ...]]:
    """Weight shapes of the Figure 4 model, built on the meta device."""
    from rigl_repro.models import meta_model
    from rigl_repro.sparsity.masks import weight_shapes

    config = index.compose("table5_cifar10")
    return weight_shapes(meta_model(config.model, int(config.dataset.num_classes)))


def contours(index: RunIndex, out_dir: Path) -> list[Path]:
    """The (alpha, delta_t) trial space of every Optuna study: mean validation accuracy per trial."""
    figure, axes = plt.subplots(2, 3, figsize=(14, 8), sharex=True, sharey=True)
    dataset = index.compose("sweep_alpha_dt").dataset.name
    for row, (variant, init) in enumerate((("rigl", "Random"), ("rigl_erk", "ERK"))):
        for col, density in enumerate((0.1, 0.2, 0.5)):
            axis = axes[row][col]
            trials = index.sweep_trials(dataset, variant, density)
            if len(trials) >= 3 and trials["alpha"].nunique() > 1 and trials["delta_t"].nunique() > 1:
                alpha, delta_t, accuracy = trials["alpha"], trials["delta_t"], trials["val_acc"]
                filled = axis.tricontourf(alpha, delta_t, accuracy, levels=12, cmap="viridis")
                figure.colorbar(filled, ax=axis, label="val accuracy (%)")
            if len(trials):
                axis.scatter(trials["alpha"], trials["delta_t"], c="white", edgecolors="black", s=25)
                best = trials.loc[trials["val_acc"].idxmax()]
                best_point = ([best["alpha"]], [best["delta_t"]])
                axis.scatter(*best_point, marker="*", s=200, c="red", label="best")
            axis.scatter([0.3], [100], marker="x", s=80, c="black", label="reference")
            axis.set(title=f"{init}, density {density} ({len(trials)} trials)", xlim=(0.1, 0.6), ylim=(0, 1050))
            legend(axis, fontsize=7)
    for axis in axes[1]:
        axis.set_xlabel("alpha")
    for axis in axes[:, 0]:
        axis.set_ylabel("delta_t")
    origin = provenance(index, [("sweep_alpha_dt", WRN_CIFAR10)])
    faithful = "(alpha, delta_t) trial space of the Optuna studies"
    figure.suptitle(origin.title(faithful, "The (alpha, delta_t) trial space of Table 4's Optuna studies"))
    return save(figure, out_dir, "contours")


FIGURES = {
    "fig1": figure1, "fig2": figure2, "fig3": figure3, "fig4": figure4, "contours": contours,
    "fig_fmnist": fashion_mnist_figure,
}  # fmt: skip


def run_label(summary: Mapping[str, Any]) -> str:
    """``rigl (erk) at 0.1``: method, distribution and density of a run (``dense`` alone for dense runs)."""
    masking = summary["config"]["masking"]
    if masking["name"] in ("dense", "small_dense"):
        return masking["name"]
    return f"{masking['name']} ({masking['distribution']}) at {masking['density']:g}"


def seed_mean(series: Sequence[Mapping[int, float]]) -> tuple[list[int], list[float]]:
    """The steps every seed has, and the mean over seeds at each."""
    steps = sorted(set.intersection(*(set(points) for points in series)))
    return steps, [sum(points[step] for points in series) / len(series) for step in steps]


def mask_dynamics_figure(
    summaries: Sequence[Mapping[str, Any]], out_dir: Path, name: str = "mask_dynamics"
) -> list[Path]:
    """How much of the network each configuration's masks explored, mean over its seeds: the in-time
    over-parameterisation rate (the fraction of weights active at least once; Liu et al. 2021) from the initial
    mask through every topology update, and the fraction of active weights each update replaced. One line per
    configuration (``group_by_configuration``): runs that share a method, distribution and density but differ
    in another option are separate lines, labelled by what differs. Dense runs are left out."""
    sparse = [s for s in summaries if s["config"]["masking"]["name"] not in ("dense", "small_dense")]
    groups = group_by_configuration(sparse, run_label)
    figure, (explored, replaced) = plt.subplots(1, 2, figsize=(12, 4.5))
    for group in sorted(groups, key=lambda group: (group.key, group.differs)):
        label = group.label(group.key)
        exploration, turnover = [], []
        for run in group.runs:
            updates = [update for epoch in run["history"] for update in epoch.get("mask_updates", ())]
            points = {0: run["initial_density"], run["history"][-1]["step"]: run["exploration"]}
            points.update({update["step"]: update["exploration"] for update in updates})
            exploration.append(points)
            turnover.append({update["step"]: update["replaced"] for update in updates})
        steps, rates = seed_mean(exploration)
        (line,) = explored.plot(steps, rates, label=f"{label} ({rates[-1]:.2f})" if rates else label)
        steps, fractions = seed_mean(turnover)
        if steps:
            replaced.plot(steps, fractions, color=line.get_color(), label=label)
    explored.set(xlabel="training step", ylabel="weights ever active (fraction)",
                 title="Exploration: in-time over-parameterisation rate")  # fmt: skip
    replaced.set(xlabel="training step", ylabel="active weights replaced (fraction)",
                 title="Turnover at each topology update")  # fmt: skip
    several = any(group.differs for group in groups)  # long labels: legends below the axes, clear of the lines
    for axis, where in ((explored, "center right"), (replaced, "upper right")):  # clear of static's flat line
        axis.grid(alpha=0.3)
        if several:
            legend(axis, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
        else:
            legend(axis, fontsize=8, loc=where)
    return save(figure, out_dir, name)
