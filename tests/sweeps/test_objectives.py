"""What a study optimises: named numbers of a run's summary, their mean over a trial's seeds, never the test
accuracy."""

import pytest

from rigl_repro.errors import ConfigError
from rigl_repro.sweeps.objectives import OBJECTIVES, check_objectives, mean_objectives, run_objectives, trial_values

SUMMARY = {"val_acc": 0.9, "test_acc": 0.8, "density": 0.1, "wall_time_s": 12.0,
           "flops": {"train_relative": 0.3, "inference_relative": 0.2}}  # fmt: skip


def test_a_run_s_objectives_are_its_summary_s_numbers():
    assert run_objectives(SUMMARY) == {"val_acc": 0.9, "train_flops": 0.3, "inference_flops": 0.2, "density": 0.1,
                                       "wall_time_s": 12.0}  # fmt: skip
    assert run_objectives({**SUMMARY, "val_acc": None})["val_acc"] is None


def test_a_trial_s_objectives_are_the_means_over_its_seeds():
    runs = [run_objectives(SUMMARY), run_objectives({**SUMMARY, "val_acc": 0.7, "wall_time_s": 8.0})]
    means = mean_objectives(runs)
    assert means["val_acc"] == pytest.approx(0.8) and means["wall_time_s"] == pytest.approx(10.0)
    assert mean_objectives([*runs, run_objectives({**SUMMARY, "val_acc": None})])["val_acc"] is None


def test_the_study_takes_the_values_of_its_objectives_in_their_order():
    returned = run_objectives(SUMMARY)
    assert trial_values(returned, ["train_flops", "val_acc"]) == [0.3, 0.9]
    assert trial_values(0.5, ["val_acc"]) == [0.5]  # a task function that returns one number
    with pytest.raises(ValueError, match="no validation split"):
        trial_values({**returned, "val_acc": None}, ["val_acc"])


def test_the_test_accuracy_and_unknown_names_are_refused_in_one_line():
    assert check_objectives(["val_acc", "train_flops"]) == ("val_acc", "train_flops")
    assert check_objectives("density") == ("density",)
    with pytest.raises(ConfigError, match="test_acc cannot be an objective: choosing trials by it tunes on the test"):
        check_objectives(["val_acc", "test_acc"])
    with pytest.raises(ConfigError, match=f"'accuracy' is not an objective; choose from {', '.join(OBJECTIVES)}"):
        check_objectives(["accuracy"])
    with pytest.raises(ConfigError, match="lists val_acc twice"):
        check_objectives(["val_acc", "val_acc"])
    with pytest.raises(ConfigError, match="expected a list"):
        check_objectives([])
