"""The CSV logger (``logger=csv``): its columns, whole-file atomic rewrites, resumed runs without duplicate
epochs, the summary's values, and one-line errors."""

import csv
import errno
import json
import os

import pytest
from omegaconf import OmegaConf

from rigl_repro.config import compose_config
from rigl_repro.errors import ConfigError
from rigl_repro.loggers import build_logger, validate_logger_options
from rigl_repro.loggers.csv import CsvLogger
from rigl_repro.results import OutputError
from rigl_repro.training.session import run
from tests.helpers import run_killed_in_epoch


def csv_config(*overrides):
    """A digits run with the CSV logger (``tests.helpers.compose_config`` sets W&B's ``logger.mode``)."""
    return compose_config(["dataset=digits", "logger=csv", *overrides])


def epoch_entry(epoch, val_acc=0.5, updates=()):
    """An epoch's metrics as ``Trainer.train_epoch`` builds them, 10 steps an epoch."""
    return {
        "epoch": epoch, "step": 10 * epoch, "train_loss": 2.0 / epoch, "train_acc": 0.1 * epoch, "val_acc": val_acc,
        "lr": 0.1, "density": 0.25, "layer_densities": {"conv.weight": 0.5, "fc.weight": 0.125},
        "mask_updates": [{"step": step, "replaced": 0.01 * step, "layer_replaced": [0.02, 0.001 * step],
                          "exploration": 0.3} for step in updates],
        "exploration": 0.3 + 0.01 * epoch, "images_per_s": 1000.0 + epoch,
    }  # fmt: skip


def test_the_density_over_all_layers_is_a_column_of_its_own(tmp_path):
    """Every epoch holds the budgeted ``density`` and ``density_all_layers`` (every masked layer): both kept."""
    logger = build_logger({"name": "csv"}, config={}, output_dir=tmp_path)
    logger.log({**epoch_entry(1), "density_all_layers": 0.3}, step=10)
    (row,) = read_rows(tmp_path / "history.csv")
    assert float(row["density"]) == 0.25 and float(row["density_all_layers"]) == 0.3


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_history_has_one_row_per_epoch_and_a_density_column_per_layer(tmp_path):
    logger = build_logger({"name": "csv"}, config={}, output_dir=tmp_path)
    assert isinstance(logger, CsvLogger)
    logger.log(epoch_entry(1, val_acc=None, updates=[5]), step=10)
    logger.log(epoch_entry(2, updates=[15, 18]), step=20)

    with open(tmp_path / "history.csv", newline="") as file:
        header = next(csv.reader(file))
    assert header == ["epoch", "step", "train_loss", "train_acc", "val_acc", "lr", "density", "exploration",
                      "images_per_s", "density/conv.weight", "density/fc.weight"]  # fmt: skip
    rows = read_rows(tmp_path / "history.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"] and [row["step"] for row in rows] == ["10", "20"]
    assert rows[0]["val_acc"] == "" and float(rows[1]["val_acc"]) == 0.5  # no validation set: an empty cell
    assert float(rows[1]["train_loss"]) == 1.0 and float(rows[0]["images_per_s"]) == 1001.0
    assert float(rows[1]["exploration"]) == 0.32 and float(rows[0]["density/fc.weight"]) == 0.125
    assert float(rows[0]["train_acc"]) == 0.1  # written in full precision: reads back exactly

    with open(tmp_path / "mask_updates.csv", newline="") as file:
        header = next(csv.reader(file))
    assert header == ["step", "replaced", "exploration", "replaced/conv.weight", "replaced/fc.weight"]
    updates = read_rows(tmp_path / "mask_updates.csv")
    assert [row["step"] for row in updates] == ["5", "15", "18"]
    assert float(updates[2]["replaced"]) == 0.18 and float(updates[2]["replaced/fc.weight"]) == 0.001 * 18
    assert not (tmp_path / "summary.csv").exists()  # only once the run ends


def test_an_unmasked_model_has_no_layer_columns_and_no_updates(tmp_path):
    logger = build_logger({"name": "csv"}, config={}, output_dir=tmp_path)
    logger.log({**epoch_entry(1), "layer_densities": {}, "mask_updates": []}, step=10)
    with open(tmp_path / "history.csv", newline="") as file:
        assert next(csv.reader(file))[-1] == "images_per_s"
    assert (tmp_path / "mask_updates.csv").read_text().splitlines() == ["step,replaced,exploration"]


def test_the_test_accuracy_and_summary_go_to_summary_csv_not_the_history(tmp_path):
    logger = build_logger({"name": "csv"}, config={}, output_dir=tmp_path)
    logger.log(epoch_entry(1), step=10)
    logger.log({"test_acc": 0.75}, step=10)
    assert len(read_rows(tmp_path / "history.csv")) == 1
    assert read_rows(tmp_path / "summary.csv") == [{"key": "test_acc", "value": "0.75"}]
    logger.summarize({
        "test_acc": 0.75, "val_acc": None, "density": 0.25,
        "flops": {"train_relative": 0.5, "exact": True, "trajectory": [[0, 0.25], [40, 0.3]]},
        "epochs": 1, "wall_time_s": 1.5, "layer_densities": {"conv.weight": 0.5, "fc.weight": 0.125},
    })  # fmt: skip
    logger.finish()
    values = {row["key"]: row["value"] for row in read_rows(tmp_path / "summary.csv")}
    assert values == {
        "test_acc": "0.75", "val_acc": "", "density": "0.25", "flops.train_relative": "0.5", "flops.exact": "True",
        "flops.trajectory": "[[0, 0.25], [40, 0.3]]", "epochs": "1", "wall_time_s": "1.5",
        "layer_densities.conv.weight": "0.5", "layer_densities.fc.weight": "0.125",
    }  # fmt: skip
    assert len(read_rows(tmp_path / "history.csv")) == 1


def test_each_epoch_replaces_the_whole_file_and_a_failed_write_leaves_the_previous_one(tmp_path, monkeypatch):
    logger = build_logger({"name": "csv"}, config={}, output_dir=tmp_path)
    logger.log(epoch_entry(1), step=10)
    before = (tmp_path / "history.csv").read_text()
    inode = (tmp_path / "history.csv").stat().st_ino
    logger.log(epoch_entry(2), step=20)
    assert (tmp_path / "history.csv").stat().st_ino != inode  # a new file renamed over the old, not appended to
    assert (tmp_path / "history.csv").read_text().startswith(before)

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    written = (tmp_path / "history.csv").read_text()
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match=r"^\S*history.csv could not be written \(No space left on device\); free"):
        logger.log(epoch_entry(3), step=30)
    monkeypatch.undo()
    assert (tmp_path / "history.csv").read_text() == written
    assert sorted(path.name for path in tmp_path.iterdir()) == ["history.csv", "mask_updates.csv"]  # no temporaries


def test_a_stale_summary_that_cannot_be_removed_is_one_line(tmp_path):
    (tmp_path / "summary.csv").mkdir()  # not a file: unlink fails, even as root
    with pytest.raises(OutputError, match=r"^\S*summary.csv could not be written \(Is a directory\); free"):
        build_logger({"name": "csv"}, config={}, output_dir=tmp_path)


def test_a_resumed_logger_rewrites_the_checkpoints_history_without_duplicates(tmp_path):
    first = build_logger({"name": "csv"}, config={}, output_dir=tmp_path)
    for epoch in (1, 2, 3):
        first.log(epoch_entry(epoch, updates=[10 * epoch - 5]), step=10 * epoch)
    first.log({"test_acc": 0.5}, step=30)  # a stale summary, say of a run whose summary.json failed to write
    # Killed after logging epoch 3 but before its checkpoint: the run resumes from epoch 2's and trains 3 again.
    history = [epoch_entry(epoch, updates=[10 * epoch - 5]) for epoch in (1, 2)]
    resumed = build_logger({"name": "csv"}, config={}, output_dir=tmp_path, history=history)
    assert [row["epoch"] for row in read_rows(tmp_path / "history.csv")] == ["1", "2"]
    assert [row["step"] for row in read_rows(tmp_path / "mask_updates.csv")] == ["5", "15"]
    assert not (tmp_path / "summary.csv").exists()
    resumed.log(epoch_entry(3, updates=[25]), step=30)
    assert [row["epoch"] for row in read_rows(tmp_path / "history.csv")] == ["1", "2", "3"]
    assert [row["step"] for row in read_rows(tmp_path / "mask_updates.csv")] == ["5", "15", "25"]
    assert history == [epoch_entry(epoch, updates=[10 * epoch - 5]) for epoch in (1, 2)]  # the trainer's, untouched


def test_a_new_run_starts_from_an_empty_history(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,step\n1,10\n")  # left by a run killed before its first checkpoint
    build_logger({"name": "csv"}, config={}, output_dir=tmp_path)
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "epoch,step,train_loss,train_acc,val_acc,lr,density,exploration,images_per_s"
    ]


def test_the_w_and_b_mode_a_scale_sets_is_ignored_but_other_options_are_refused(tmp_path):
    """scale=smoke sets logger.mode=disabled for W&B; with logger=csv the files are still written."""
    config = compose_config(["scale=smoke", "logger=csv"])
    assert config.logger.name == "csv" and config.logger.mode == "disabled"
    validate_logger_options(OmegaConf.to_container(config.logger, resolve=True))
    logger = build_logger({"name": "csv", "mode": "disabled"}, config={}, output_dir=tmp_path)
    logger.log(epoch_entry(1), step=10)
    assert len(read_rows(tmp_path / "history.csv")) == 1
    with pytest.raises(ConfigError, match="^logger.project is not an option of logger 'csv'; its options are: none$"):
        validate_logger_options({"name": "csv", "project": "rigl-repro"})


def test_a_run_with_the_csv_logger_matches_its_summary_json_after_a_resume(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # W&B as configured: the CSV logger alone keeps it out
    overrides = ("train.epochs=3", "masking=set", "masking.delta_t=5")
    run_killed_in_epoch(csv_config(*overrides), tmp_path, epoch=3)
    assert [row["epoch"] for row in read_rows(tmp_path / "history.csv")] == ["1", "2"]
    summary = run(csv_config(*overrides), tmp_path)

    rows = read_rows(tmp_path / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [entry["epoch"] for entry in summary["history"]] == [1, 2, 3]
    for row, entry in zip(rows, summary["history"]):
        assert float(row["train_loss"]) == entry["train_loss"] and int(row["step"]) == entry["step"]
        for layer, density in entry["layer_densities"].items():
            assert float(row[f"density/{layer}"]) == density
    updates = [update for entry in summary["history"] for update in entry["mask_updates"]]
    assert [int(row["step"]) for row in read_rows(tmp_path / "mask_updates.csv")] == [u["step"] for u in updates]
    assert updates, "SET updated its masks"
    values = {row["key"]: row["value"] for row in read_rows(tmp_path / "summary.csv")}
    assert float(values["test_acc"]) == summary["test_acc"] and int(values["epochs"]) == 3
    assert float(values["flops.train_relative"]) == summary["flops"]["train_relative"]
    assert json.loads(values["flops.trajectory"]) == summary["flops"]["trajectory"]
    assert not (tmp_path / "wandb").exists()


def test_epochs_logged_after_the_last_checkpoint_are_not_kept_twice(tmp_path):
    overrides = ("train.epochs=2", "checkpoint.every_epochs=2", "masking.delta_t=5")
    run_killed_in_epoch(csv_config(*overrides), tmp_path, epoch=2)  # epoch 1 logged, never checkpointed
    assert [row["epoch"] for row in read_rows(tmp_path / "history.csv")] == ["1"]
    summary = run(csv_config(*overrides), tmp_path)  # trains epoch 1 again
    assert [row["epoch"] for row in read_rows(tmp_path / "history.csv")] == ["1", "2"]
    assert float(read_rows(tmp_path / "history.csv")[0]["train_loss"]) == summary["history"][0]["train_loss"]
