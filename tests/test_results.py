"""A run's summary file: written whole or not at all, and read only when every number in it is valid."""

import copy
import errno
import json
import logging
import math
import os

import pytest

from rigl_repro.results import (
    SUMMARY_METRICS,
    OutputError,
    SummaryError,
    atomic_file,
    atomic_write_json,
    collect_summaries,
    exit_on_output_error,
    load_summary,
    new_file_mode,
    read_summary,
)
from rigl_repro.training.session import run
from tests.helpers import compose_config

# A summary in the trainer's shape holding every field SUMMARY_METRICS names (``*`` picks its first item).
VALID = {
    "config": {"seed": 0}, "method": "rigl", "test_acc": 0.9, "val_acc": 0.8, "density": 0.1, "train_acc": 0.95,
    "density_all_layers": 0.11, "initial_density": 0.11, "exploration": 0.3,
    "layer_densities": {"fc.weight": 0.1}, "layer_exploration": {"fc.weight": 0.3},
    "flops": {"train_relative": 2.1, "inference_relative": 0.2, "trajectory": [[0, 0.2], [10, 0.21]]},
    "wall_time_s": 1.5, "epochs": 1,
    "history": [{"epoch": 1, "step": 10, "val_acc": 0.8, "train_acc": 0.9,
                 "mask_updates": [{"step": 5, "replaced": 0.1, "exploration": 0.3}]}],
}  # fmt: skip


def with_value(summary, path, value):
    """A copy of ``summary`` with the field at the Metric path ``path`` set to ``value`` (removed, for
    ``...``), and the dotted path of that field, which an error must name."""
    changed = copy.deepcopy(summary)
    *parents, last = path.split(".")
    node, names = changed, []
    for part in parents:
        key = first_key(node) if part == "*" else part
        node, names = node[key], [*names, str(key)]
    key = first_key(node) if last == "*" else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return changed, ".".join([*names, str(key)])


def first_key(node):
    return 0 if isinstance(node, list) else next(iter(node))


def bad_values(metric):
    """The values ``metric`` must refuse: not numbers, not finite, out of range, null where it is not
    optional, a fraction where it counts."""
    values = ["0.9", True, math.nan, math.inf, -1, [0.5]]
    values += [] if metric.nullable else [None]
    values += [5.0] if math.isfinite(metric.high) else []
    values += [2.5] if metric.integer else []
    values += [...] if metric.required else []
    return values


CASES = [(metric, value) for metric in SUMMARY_METRICS for value in bad_values(metric)]


def load_summary_of(summary, folder):
    (folder / "summary.json").write_text(json.dumps(summary))
    return load_summary(folder / "summary.json")


def test_the_valid_summary_has_every_metric_and_is_read(tmp_path):
    for metric in SUMMARY_METRICS:
        assert with_value(VALID, metric.path, "new")[0] != VALID  # the field exists: the cases below change it
    assert load_summary_of(VALID, tmp_path) == VALID


@pytest.mark.parametrize("metric, value", CASES, ids=[f"{m.path}={v!r}" for m, v in CASES])
def test_a_summary_with_an_invalid_number_is_refused_naming_the_file_and_field(tmp_path, metric, value):
    summary, field = with_value(VALID, metric.path, value)
    expected = f"has no {field}" if value is ... else f"has {field}="
    with pytest.raises(SummaryError) as raised:
        load_summary_of(summary, tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'summary.json'} {expected}") and "\n" not in message
    assert message.endswith("; delete it to train that run again")


@pytest.mark.parametrize("field", [metric.path for metric in SUMMARY_METRICS if metric.nullable])
def test_null_stays_valid_where_the_trainer_writes_it(tmp_path, field):
    summary, _ = with_value(VALID, field, None)
    assert load_summary_of(summary, tmp_path) == summary


def test_a_trainer_summary_without_validation_is_valid_and_a_broken_one_is_not_reused(tmp_path):
    finished = run(compose_config("train.epochs=2", "dataset.val_size=0", "masking.delta_t=5"), tmp_path)
    assert finished["val_acc"] is None and any(entry["mask_updates"] for entry in finished["history"])
    assert read_summary(tmp_path) == finished
    broken = json.loads((tmp_path / "summary.json").read_text())
    broken["test_acc"] = "0.9"
    (tmp_path / "summary.json").write_text(json.dumps(broken))
    with pytest.raises(SummaryError, match=r'summary.json has test_acc="0.9", not a number in \[0, 1\]; delete it'):
        run(compose_config("train.epochs=2", "dataset.val_size=0", "masking.delta_t=5"), tmp_path)


def test_a_summary_is_written_whole_and_read_back(tmp_path):
    assert read_summary(tmp_path) is None
    summary = VALID
    atomic_write_json(tmp_path / "summary.json", summary)
    assert read_summary(tmp_path) == summary
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == new_file_mode()  # not 0600: others may read it


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "summary.json", {"config": {}})
    finally:
        os.umask(previous)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == mode
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "is not valid JSON"), ("[1, 2]", "is not a run summary"),
     ('{"test_acc": 1}', "is not a run summary")],  # fmt: skip
)
def test_a_corrupt_summary_is_named_in_one_line_and_reports_go_on(tmp_path, caplog, content, message):
    for name, text in (("good", json.dumps(VALID)), ("bad", content)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(text)
    with pytest.raises(SummaryError, match=f"bad/summary.json {message}.*delete it"):
        read_summary(tmp_path / "bad")
    with caplog.at_level(logging.WARNING):
        summaries = collect_summaries(tmp_path)
    assert [summary["run_dir"] for summary in summaries] == [str(tmp_path / "good")]
    assert "left out 1 unreadable or invalid run(s)" in caplog.text and "bad/summary.json" in caplog.text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"config": {}, "old": True})
    with pytest.raises(OutputError, match=r"summary.json could not be written \(No space left on device\); free"):
        with atomic_file(path) as temporary:
            temporary.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(path.read_text())["old"] and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize(
    "error, line",
    [(OutputError("out/t.md could not be written (No space left on device); free some space"),
      "out/t.md could not be written"),
     (PermissionError(errno.EACCES, "Permission denied", "runs/x"), "runs/x: Permission denied"),  # not a write
     (ConnectionError("W&B is unreachable"), "W&B is unreachable")],
)  # fmt: skip
def test_a_script_that_cannot_write_ends_in_one_line_with_exit_code_2(capsys, error, line):
    def main():
        raise error

    with pytest.raises(SystemExit) as caught:
        exit_on_output_error(main)
    err = capsys.readouterr().err.splitlines()
    assert caught.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {line}")
    assert ("free some space" in err[0]) == isinstance(error, OutputError)  # advice for writes alone
