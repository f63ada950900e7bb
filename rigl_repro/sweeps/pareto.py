"""The Pareto front of a multi-objective sweep (e.g. validation accuracy against training FLOPs), as a table
and a plot.

The front is computed here from a plain list of trials rather than read from ``study.best_trials``: a report
rebuilt from trials that were filtered, merged from several studies or loaded from files has no study to ask.
The figure is built object-oriented (``matplotlib.figure.Figure``), so importing this module selects no
matplotlib backend and registers nothing with pyplot: a library must not change the backend of the program
that imports it. Matplotlib is imported when a figure is drawn, not with the module: every ``main.py`` start loads
the sweeper plugin and with it this module, and matplotlib would add half a second to each.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from rigl_repro.results import atomic_file, write_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

AXIS_LABELS = {
    "val_acc": "validation accuracy",
    "train_flops": "training FLOPs (x dense)",
    "inference_flops": "inference FLOPs (x dense)",
    "density": "density",
    "wall_time_s": "wall time (s)",
}
# The objective plotted upwards when the sweep has it: accuracy is what a reader looks for first.
PREFERRED_Y = "val_acc"
RESERVED_COLUMNS = ("trial", "pareto")


def _signs(directions: Sequence[str | StudyDirection]) -> list[float]:
    """+1 for each objective to minimize, -1 for each to maximize: multiplied into the values, every objective
    becomes one to minimize, so dominance needs one comparison rule."""
    signs = []
    for direction in directions:
        name = direction.name.lower() if isinstance(direction, StudyDirection) else str(direction).lower()
        if name not in ("minimize", "maximize"):
            raise ValueError(f"direction {direction!r} is neither 'minimize' nor 'maximize'")
        signs.append(1.0 if name == "minimize" else -1.0)
    if not signs:
        raise ValueError("at least one direction is needed")
    return signs


def _complete(trials: Sequence[FrozenTrial], objectives: int) -> list[FrozenTrial]:
    """The COMPLETE trials by trial number, each checked to have one value per objective and no NaN."""
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    for trial in complete:
        values = trial.values or []
        if len(values) != objectives:
            raise ValueError(f"trial {trial.number} has {len(values)} values for {objectives} objectives")
        # A NaN compares false with everything: it would never be dominated and so sit on every front.
        if any(math.isnan(v) for v in values):
            raise ValueError(f"trial {trial.number} has a NaN value: {values}")
    return complete


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b``, both already oriented so that lower is better."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[str | StudyDirection]) -> list[FrozenTrial]:
    """The COMPLETE trials that no other COMPLETE trial dominates, by trial number.

    A trial dominates another when it is at least as good in every objective and strictly better in one,
    "good" following each direction ("maximize" or "minimize"). Trials with equal values do not dominate one
    another, so ties are all on the front (as in Optuna's ``study.best_trials``). FAIL, PRUNED, RUNNING and
    WAITING trials are ignored.
    """
    signs = _signs(directions)
    complete = _complete(trials, len(signs))
    oriented = [[s * v for s, v in zip(signs, t.values)] for t in complete]
    # Quadratic, which is fine for sweeps of hundreds of trials and keeps the rule plain to read.
    return [
        trial
        for trial, values in zip(complete, oriented)
        if not any(_dominates(other, values) for other in oriented)  # none dominates itself
    ]


def _check_objectives(objectives: Sequence[str], directions: Sequence[str | StudyDirection]) -> None:
    if len(objectives) != len(directions):
        raise ValueError(f"{len(objectives)} objectives {list(objectives)} but {len(directions)} directions")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"objectives are named twice: {list(objectives)}")
    clash = set(objectives) & set(RESERVED_COLUMNS)
    if clash:
        raise ValueError(f"objectives {sorted(clash)} would clash with the columns {list(RESERVED_COLUMNS)}")


def pareto_rows(
    trials: Sequence[FrozenTrial], objectives: Sequence[str], directions: Sequence[str | StudyDirection]
) -> list[dict[str, Any]]:
    """One flat row per COMPLETE trial, by trial number: ``trial`` (its number), each objective's value by its
    name, each parameter by its name (``masking.alpha``; None where a trial lacks it) and ``pareto`` (whether
    it is on the front). Flat, so the rows go straight into a CSV or a DataFrame."""
    _check_objectives(objectives, directions)
    complete = _complete(trials, len(objectives))
    on_front = {t.number for t in pareto_front(complete, directions)}
    param_names = _param_names(complete)
    clash = set(param_names) & (set(objectives) | set(RESERVED_COLUMNS))
    if clash:
        raise ValueError(f"parameters {sorted(clash)} have the name of an objective or of a column of the table")
    rows = []
    for trial in complete:
        row: dict[str, Any] = {"trial": trial.number}
        row.update(zip(objectives, trial.values))
        row.update({name: trial.params.get(name) for name in param_names})
        row["pareto"] = trial.number in on_front
        rows.append(row)
    return rows


def _param_names(trials: Sequence[FrozenTrial]) -> list[str]:
    """Every parameter name of the trials, sorted: trials of a conditional search space differ in theirs."""
    return sorted({name for trial in trials for name in trial.params})


def _axes(objectives: Sequence[str]) -> tuple[int, int]:
    """The indices of the objectives plotted on x and y."""
    y = objectives.index(PREFERRED_Y) if PREFERRED_Y in objectives else 0
    x = next(i for i in range(len(objectives)) if i != y)
    return x, y


def pareto_figure(
    trials: Sequence[FrozenTrial],
    objectives: Sequence[str],
    directions: Sequence[str | StudyDirection],
    stem: str,
) -> Figure:
    """A scatter of every COMPLETE trial with the front highlighted, as a ``Figure`` not registered with
    pyplot (nothing to close). y is ``val_acc`` when it is an objective, else the first one; x is the first
    other objective. With more than two objectives the title names those not shown, since front points may
    then look dominated in the two that are."""
    _check_objectives(objectives, directions)
    if len(objectives) < 2:
        raise ValueError(f"a Pareto plot needs two objectives or more, not {list(objectives)}")
    complete = _complete(trials, len(objectives))
    front = pareto_front(complete, directions)
    x, y = _axes(objectives)
    signs = _signs(directions)

    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8))
    axis = figure.subplots()
    axis.scatter(
        [t.values[x] for t in complete], [t.values[y] for t in complete],
        color="tab:gray", alpha=0.5, s=20, label="trials",
    )  # fmt: skip
    # Ascending x, as the step line needs; equal x (possible with hidden objectives) puts the better y first.
    ordered = sorted(front, key=lambda t: (t.values[x], signs[y] * t.values[y], t.number))
    # The step stays at a point's y until the next point's x when x is minimized ("post"): up to there no
    # better y is reachable without spending more x. When x is maximized the next point's y holds ("pre").
    where = "post" if signs[x] > 0 else "pre"
    axis.step(
        [t.values[x] for t in ordered], [t.values[y] for t in ordered], where=where,
        color="tab:red", marker="o", markersize=6, label="Pareto front",
    )  # fmt: skip
    # Tied trials share a point: one label naming them all, as labels drawn on top of each other are unreadable.
    labels: dict[tuple[float, float], list[str]] = {}
    for trial in ordered:
        labels.setdefault((trial.values[x], trial.values[y]), []).append(str(trial.number))
    for point, names in labels.items():
        axis.annotate(", ".join(names), point, textcoords="offset points", xytext=(4, 4), fontsize=8, color="tab:red")
    axis.set_xlabel(AXIS_LABELS.get(objectives[x], objectives[x]))
    axis.set_ylabel(AXIS_LABELS.get(objectives[y], objectives[y]))
    title = f"{stem}: Pareto front ({len(front)} of {len(complete)} trials)"
    hidden = [name for i, name in enumerate(objectives) if i not in (x, y)]
    if hidden:
        title += f"\nnot shown: {', '.join(hidden)}"
    axis.set_title(title)
    axis.legend(loc="best", fontsize=8)
    axis.grid(alpha=0.3)
    return figure


def write_pareto(
    trials: Sequence[FrozenTrial],
    objectives: Sequence[str],
    directions: Sequence[str | StudyDirection],
    folder: Path,
    stem: str,
) -> list[Path]:
    """Write ``folder/<stem>-pareto.csv`` (the rows of ``pareto_rows``; columns trial, the objectives, the
    parameters sorted, pareto) and ``folder/<stem>-pareto.png`` (``pareto_figure``); return [csv, png].

    With one objective there is no trade-off to show, and with no COMPLETE trial nothing to show: nothing is
    written and [] is returned. Both files are written atomically, so a reader never sees half of one.
    """
    _check_objectives(objectives, directions)
    complete = _complete(trials, len(objectives))
    if len(objectives) < 2 or not complete:
        return []
    folder = Path(folder)
    rows = pareto_rows(complete, objectives, directions)
    columns = ["trial", *objectives, *_param_names(complete), "pareto"]
    csv_path = folder / f"{stem}-pareto.csv"
    png_path = folder / f"{stem}-pareto.png"
    with atomic_file(csv_path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    write_figure(pareto_figure(complete, objectives, directions, stem), png_path, dpi=150, bbox_inches="tight")
    return [csv_path, png_path]
