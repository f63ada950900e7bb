"""The Pareto front of a multi-objective sweep: which trials are on it, the table and the plot written of it."""

from __future__ import annotations

import csv
import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from rigl_repro.sweeps.pareto import pareto_figure, pareto_front, pareto_rows, write_pareto

OBJECTIVES = ["val_acc", "train_flops"]
DIRECTIONS = ["maximize", "minimize"]
ALPHA = FloatDistribution(0.1, 0.6)
DELTA_T = IntDistribution(50, 1000, step=50)
DISTRIBUTION = CategoricalDistribution(["uniform", "erk"])


def numbered(trials: list[FrozenTrial], directions: list[str]) -> tuple[optuna.Study, list[FrozenTrial]]:
    """The trials as a study numbers them (0, 1, ...), with that study to compare against."""
    study = optuna.create_study(directions=directions)
    study.add_trials(trials)
    return study, study.get_trials(deepcopy=False)


def complete(values: list[float], alpha: float = 0.3, delta_t: int = 100, **extra: str) -> FrozenTrial:
    params: dict = {"masking.alpha": alpha, "masking.delta_t": delta_t}
    distributions: dict = {"masking.alpha": ALPHA, "masking.delta_t": DELTA_T}
    if "distribution" in extra:
        params["masking.distribution"] = extra["distribution"]
        distributions["masking.distribution"] = DISTRIBUTION
    return create_trial(values=values, params=params, distributions=distributions)


def hand_made() -> list[FrozenTrial]:
    """Trials 0, 1, 2 (a tie with 1) and 6 are on the front; 3 and 4 are dominated. The PRUNED trial 5 would
    dominate every one if it counted, and the FAIL trial 7 has no values."""
    trials = [
        complete([0.90, 1.0], 0.3, 100, distribution="erk"),
        complete([0.85, 0.5], 0.4, 200),
        complete([0.85, 0.5], 0.5, 500, distribution="uniform"),
        complete([0.80, 0.6], 0.2, 750),  # worse than 1 in both
        complete([0.90, 1.2], 0.1, 50),  # as accurate as 0, but costlier
        create_trial(state=TrialState.PRUNED, values=[1.0, 0.0]),
        complete([0.50, 0.1], 0.6, 1000),
        create_trial(state=TrialState.FAIL),
    ]
    return numbered(trials, DIRECTIONS)[1]


def numbers(trials: list[FrozenTrial]) -> list[int]:
    return [t.number for t in trials]


def test_the_front_keeps_ties_drops_dominated_trials_and_ignores_unfinished_ones():
    trials = hand_made()
    assert numbers(pareto_front(trials, DIRECTIONS)) == [0, 1, 2, 6]
    # The order of the input does not matter: the front comes by trial number.
    assert numbers(pareto_front(list(reversed(trials)), DIRECTIONS)) == [0, 1, 2, 6]


def test_the_directions_decide_the_front():
    trials = hand_made()
    # Minimizing accuracy too, the least accurate and cheapest trial dominates all the others.
    assert numbers(pareto_front(trials, ["minimize", "minimize"])) == [6]
    # Maximizing both, the costliest of the most accurate wins.
    assert numbers(pareto_front(trials, ["maximize", "maximize"])) == [4]
    # Optuna's own direction objects are read the same as their names.
    directions = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert numbers(pareto_front(trials, directions)) == [0, 1, 2, 6]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_objectives", [2, 3])
def test_the_front_is_the_one_optuna_reports_as_best_trials(seed, n_objectives):
    rng = random.Random(seed)
    directions = [rng.choice(["minimize", "maximize"]) for _ in range(n_objectives)]
    trials = []
    for _ in range(30):
        if rng.random() < 0.1:
            trials.append(create_trial(state=TrialState.FAIL))
            continue
        # Few distinct values, so that equal values in one objective and whole ties are common.
        values = [rng.choice([0.1, 0.2, 0.3, 0.4, 0.5]) for _ in range(n_objectives)]
        trials.append(complete(values, round(rng.uniform(0.1, 0.6), 3), rng.choice([50, 100, 500])))
    study, numbered_trials = numbered(trials, directions)
    front = numbers(pareto_front(numbered_trials, directions))
    assert front == sorted(t.number for t in study.best_trials)
    assert numbers(pareto_front(numbered_trials, study.directions)) == front
    assert 0 < len(front) < 30


def test_a_bad_direction_or_a_missing_value_is_refused():
    trials = hand_made()
    with pytest.raises(ValueError, match="sideways"):
        pareto_front(trials, ["maximize", "sideways"])
    with pytest.raises(ValueError, match="values for 3 objectives"):
        pareto_front(trials, ["maximize", "minimize", "minimize"])
    with pytest.raises(ValueError, match="2 objectives"):
        pareto_rows(trials, OBJECTIVES, ["maximize"])


def test_the_rows_are_flat_one_per_complete_trial():
    rows = pareto_rows(hand_made(), OBJECTIVES, DIRECTIONS)
    assert [row["trial"] for row in rows] == [0, 1, 2, 3, 4, 6]
    assert rows[0] == {
        "trial": 0, "val_acc": 0.90, "train_flops": 1.0, "masking.alpha": 0.3, "masking.delta_t": 100,
        "masking.distribution": "erk", "pareto": True,
    }  # fmt: skip
    assert rows[3]["masking.distribution"] is None  # a parameter this trial did not have
    assert [row["pareto"] for row in rows] == [True, True, True, False, False, True]


def test_the_csv_has_a_stable_header_and_every_complete_trial(tmp_path):
    paths = write_pareto(hand_made(), OBJECTIVES, DIRECTIONS, tmp_path / "report", "alpha-dt")
    csv_path, png_path = tmp_path / "report" / "alpha-dt-pareto.csv", tmp_path / "report" / "alpha-dt-pareto.png"
    assert paths == [csv_path, png_path]
    with open(csv_path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
    assert reader.fieldnames == [
        "trial", "val_acc", "train_flops", "masking.alpha", "masking.delta_t", "masking.distribution", "pareto",
    ]  # fmt: skip
    assert [int(row["trial"]) for row in rows] == [0, 1, 2, 3, 4, 6]
    assert [float(row["val_acc"]) for row in rows] == [0.90, 0.85, 0.85, 0.80, 0.90, 0.50]
    assert [float(row["train_flops"]) for row in rows] == [1.0, 0.5, 0.5, 0.6, 1.2, 0.1]
    assert [int(row["masking.delta_t"]) for row in rows] == [100, 200, 500, 750, 50, 1000]
    assert [row["masking.distribution"] for row in rows] == ["erk", "", "uniform", "", "", ""]
    assert [row["pareto"] for row in rows] == ["True", "True", "True", "False", "False", "True"]
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Only the two files: the atomic writes left no temporary behind.
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [csv_path.name, png_path.name]


def test_the_plot_puts_accuracy_up_and_steps_through_the_front_along_x():
    figure = pareto_figure(hand_made(), OBJECTIVES, DIRECTIONS, "alpha-dt")
    (axis,) = figure.axes
    assert axis.get_title() == "alpha-dt: Pareto front (4 of 6 trials)"
    assert axis.get_xlabel() == "training FLOPs (x dense)"
    assert axis.get_ylabel() == "validation accuracy"
    (step,) = axis.get_lines()
    assert list(step.get_xdata()) == [0.1, 0.5, 0.5, 1.0]  # front trials 6, 1, 2, 0
    assert list(step.get_ydata()) == [0.50, 0.85, 0.85, 0.90]
    assert step.get_drawstyle() == "steps-post"  # FLOPs are minimized: a point's accuracy holds until the next
    assert sorted(text.get_text() for text in axis.texts) == ["0", "1, 2", "6"]  # the tie labelled once
    assert len(axis.collections[0].get_offsets()) == 6  # every complete trial is scattered


def test_with_more_objectives_the_title_names_those_not_shown():
    objectives = ["wall_time_s", "inference_flops", "val_acc"]
    trials = numbered(
        [complete([10.0, 0.3, 0.7]), complete([20.0, 0.2, 0.8]), complete([30.0, 0.4, 0.6])],
        ["minimize", "minimize", "maximize"],
    )[1]
    (axis,) = pareto_figure(trials, objectives, ["minimize", "minimize", "maximize"], "three").axes
    assert axis.get_ylabel() == "validation accuracy"
    assert axis.get_xlabel() == "wall time (s)"
    assert axis.get_title() == "three: Pareto front (2 of 3 trials)\nnot shown: inference_flops"


def test_without_accuracy_the_first_objective_goes_up_and_unknown_names_label_themselves():
    directions = ["minimize", "maximize"]
    trials = numbered([complete([0.1, 0.5]), complete([0.2, 0.9])], directions)[1]
    (axis,) = pareto_figure(trials, ["density", "robustness"], directions, "d").axes
    assert axis.get_ylabel() == "density"
    assert axis.get_xlabel() == "robustness"
    assert axis.get_lines()[0].get_drawstyle() == "steps-pre"  # x is maximized


def test_nothing_is_written_for_one_objective_or_no_complete_trial(tmp_path):
    single = numbered([complete([0.9]), complete([0.8])], ["maximize"])[1]
    assert write_pareto(single, ["val_acc"], ["maximize"], tmp_path / "one", "s") == []
    unfinished = numbered([create_trial(state=TrialState.FAIL)], DIRECTIONS)[1]
    assert write_pareto(unfinished, OBJECTIVES, DIRECTIONS, tmp_path / "none", "s") == []
    assert write_pareto([], OBJECTIVES, DIRECTIONS, tmp_path / "none", "s") == []
    assert list(tmp_path.iterdir()) == []
