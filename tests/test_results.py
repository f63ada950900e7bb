"""A run's identity and its summary file."""

import json

from rigl_repro.results import atomic_write_json, read_summary, run_identity

CONFIG = {
    "dataset": {"name": "cifar10"},
    "model": {"name": "wrn22_2", "width": 1.0},
    "masking": {"name": "rigl", "density": 0.1},
    "train": {"lr": 0.1, "epochs": 250, "amp": "auto", "channels_last": "auto", "compile": "auto",
              "eval_batch_size": 1000},
    "seed": 0,
    "device": "auto",
    "deterministic": False,
    "logger": {"mode": "offline"},
}  # fmt: skip


def test_the_identity_keeps_what_determines_results_and_drops_speed_options():
    identity = run_identity(CONFIG)
    assert identity == {
        "dataset": {"name": "cifar10"},
        "model": {"name": "wrn22_2", "width": 1.0},
        "masking": {"name": "rigl", "density": 0.1},
        "train": {"lr": 0.1, "epochs": 250},
        "seed": 0,
    }
    faster = {**CONFIG, "device": "cuda", "deterministic": True, "train": {**CONFIG["train"], "compile": "off"}}
    assert run_identity(faster) == identity
    other = {**CONFIG, "train": {**CONFIG["train"], "lr": 0.05}}
    assert run_identity(other) != identity
    older = {**CONFIG, "train": {k: v for k, v in CONFIG["train"].items() if k != "compile"}}
    assert run_identity(older) == identity  # a run recorded before an execution option existed
    moved = {**CONFIG, "dataset": {**CONFIG["dataset"], "root": "/elsewhere", "system_root": None, "download": False}}
    assert run_identity(moved) == identity  # where the data are found is not what they are


def test_a_summary_is_written_whole_and_read_back(tmp_path):
    assert read_summary(tmp_path) is None
    atomic_write_json(tmp_path / "summary.json", {"test_acc": 0.9})
    assert read_summary(tmp_path) == {"test_acc": 0.9}
    assert json.loads((tmp_path / "summary.json").read_text()) == {"test_acc": 0.9}
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind
