"""A trial's runs and its study: the link the sweeper hands each job, the intermediate values a trial's seeds
report (their running mean, step by step), the pruner's answer, and a pruned run's folder."""

import json

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from rigl_repro.loggers import run_labels
from rigl_repro.results import SUMMARY_FILE, collect_summaries
from rigl_repro.sweeps.trial import (
    TRIAL_VARIABLE,
    TrialLink,
    TrialReport,
    clear_pruned,
    is_pruned,
    mark_pruned,
    mean_curve,
)
from rigl_repro.training.session import run
from rigl_repro.training.trainer import StoppedEarly
from tests.helpers import compose_config

MEDIAN = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0}


def epochs(*accuracies):
    return [{"epoch": index + 1, "val_acc": value} for index, value in enumerate(accuracies)]


def test_a_trial_s_curve_is_the_mean_over_its_seeds_so_far_at_each_epoch_the_last_one_reached():
    seed0, seed1 = epochs(0.2, 0.4, 0.6), epochs(0.4, 0.8)
    assert mean_curve([], seed0[:2]) == {0: 0.2, 1: 0.4}
    assert mean_curve([seed0], seed1) == pytest.approx({0: 0.3, 1: 0.6})  # epochs, not seed x epochs
    assert mean_curve([seed0], epochs(None)) == {}  # no validation value


def test_the_link_reaches_the_job_whole_through_a_hydra_override():
    link = TrialLink(study="it's, a study", storage="sqlite:////tmp/a b.db", trial_id=7, number=3,
                     params={"masking.alpha": 0.25, "variant": "rigl"}, objectives=("val_acc", "train_flops"),
                     pruner=MEDIAN)  # fmt: skip
    (parsed,) = OverridesParser.create().parse_overrides([link.override()])
    assert parsed.get_key_element() == f"++hydra.job.env_set.{TRIAL_VARIABLE}"
    assert TrialLink.from_environment({TRIAL_VARIABLE: parsed.value()}) == link
    assert TrialLink.from_environment({}) is None


def test_the_link_labels_the_trial_s_runs_for_trackers():
    """Grouped by study, named by trial and by what the run is (``run_labels``), tagged as the run is."""
    config = OmegaConf.to_container(compose_config("variant=rigl_erk", "masking.alpha=0.3", "seed=1"), resolve=True)
    labels = TrialLink(study="s", storage=None, trial_id=0, number=4, params={"masking.alpha": 0.3}).labels(config)
    assert (labels.name, labels.group, labels.job_type) == ("trial 4 · rigl erk d=0.1 seed 1", "s", "sweep-trial")
    assert labels.tags == run_labels(config).tags == ("digits", "small_cnn", "rigl", "erk", "paper", "rigl_erk")
    assert labels.config["trial"] == {"study": "s", "number": 4, "params": {"masking.alpha": 0.3},
                                      "objectives": ["val_acc"]}  # fmt: skip
    assert labels.objectives == ("val_acc",)


@pytest.fixture
def stored_study(tmp_path):
    """A stored study with one complete trial (validation 0.5, 0.7, 0.9) and a second one running."""
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    first = study.ask()
    for step, value in enumerate((0.5, 0.7, 0.9)):
        first.report(value, step)
    study.tell(first, 0.9)
    second = study.ask()
    link = TrialLink(study="s", storage=storage, trial_id=second._trial_id, number=second.number, pruner=MEDIAN)
    return study, link


def test_a_run_reports_its_epochs_and_its_trial_s_pruner_stops_a_bad_one(stored_study):
    study, link = stored_study
    report = TrialReport(link)
    assert report.after_epoch(epochs(0.6), 3) is False  # above the median at step 0
    assert report.after_epoch(epochs(0.6, 0.4), 3) is True  # below it at step 1
    assert study.trials[1].intermediate_values == {0: 0.6, 1: 0.4}
    assert report.last_step() == 1


def test_a_resumed_run_reports_every_epoch_of_its_history_and_a_later_seed_the_mean(stored_study):
    study, link = stored_study
    report = TrialReport(link)
    assert report.seed_done(epochs(0.6, 0.8, 0.9), more=True) is False  # found finished: reported, judged
    report.after_epoch(epochs(0.8), 3)
    assert study.trials[1].intermediate_values == pytest.approx({0: 0.7, 1: 0.8, 2: 0.9})  # epoch 0: both seeds


def test_later_seeds_are_judged_on_the_mean_curve_and_a_bad_trial_stops_between_seeds(stored_study):
    study, link = stored_study  # the complete trial's curve: 0.5, 0.7, 0.9
    good_first = TrialReport(link)
    good_first.seed_done(epochs(0.6, 0.8, 0.95), more=True)
    assert good_first.after_epoch(epochs(0.1), 3) is True  # mean 0.35 at epoch 0: below 0.5, despite seed 0's 0.95
    bad = TrialReport(link)
    assert bad.seed_done(epochs(0.3, 0.4, 0.5), more=True) is True  # stopped before its next seed
    assert bad.seed_done(epochs(0.3, 0.4, 0.5), more=False) is False  # its last seed: nothing left to save


def test_without_a_pruner_or_a_reachable_storage_a_run_trains_on(stored_study, tmp_path, caplog):
    study, link = stored_study
    unpruned = TrialReport(TrialLink(**{**link.__dict__, "pruner": None}))
    assert unpruned.after_epoch(epochs(0.1, 0.1), 3) is False
    assert study.trials[1].intermediate_values == {0: 0.1, 1: 0.1}  # reported all the same
    folder = tmp_path / "a folder"
    folder.mkdir()
    unreachable = TrialReport(TrialLink(**{**link.__dict__, "storage": f"sqlite:///{folder}"}))
    assert unreachable.after_epoch(epochs(0.1), 3) is False
    assert "trains to the end without reporting" in caplog.text


def test_a_pruned_run_keeps_its_checkpoint_and_reports_leave_its_folder_out(tmp_path):
    calls = []

    def stop_after_two(history, total):
        calls.append((len(history), total))
        return len(history) == 2

    cfg = compose_config("train.epochs=4", "checkpoint.every_epochs=3", "masking.delta_t=8")
    with pytest.raises(StoppedEarly) as stopped:
        run(cfg, tmp_path, after_epoch=stop_after_two)
    assert (stopped.value.epoch, stopped.value.epochs) == (2, 4) and calls == [(1, 4), (2, 4)]
    assert (tmp_path / "checkpoint.pt").exists() and not (tmp_path / SUMMARY_FILE).exists()

    link = TrialLink(study="s", storage=None, trial_id=0, number=2)
    mark_pruned(tmp_path, link, 2, 4)
    assert is_pruned(tmp_path) and json.loads((tmp_path / "pruned.json").read_text())["epoch"] == 2
    resumed = run(cfg, tmp_path)  # a later trial of the same parameters goes on from the checkpoint
    assert resumed["epochs"] == 4 and len(resumed["history"]) == 4
    assert collect_summaries(tmp_path) == []  # still marked: left out
    clear_pruned(tmp_path)
    assert len(collect_summaries(tmp_path)) == 1
