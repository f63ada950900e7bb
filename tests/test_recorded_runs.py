"""Behaviour kept bit for bit across redesigns: runs trained now against runs recorded by an earlier commit.

``tests/recorded/runs.json`` was first recorded by ``scripts/recorded_runs.py record`` at the commit before the
training side's redesign (3a848f0). It was recorded again for issue 25, on an AVX2 machine with the kernels
``SAME_KERNELS`` fixes (the first recording, made on another machine, differed there in the last bits): the
commit before issue 25 (7dc23b7), recorded there, and issue 25's code differ in nothing but the two density
entries of each history epoch (``density`` now over the budgeted layers, ``density_all_layers`` over every
masked one). ``tests/recorded/old_layout`` holds a checkpoint and summary written by 3a848f0.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rigl_repro.training.session import run
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "recorded"


def check(names: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "scripts" / "recorded_runs.py"), "check", str(RECORDED / "runs.json"),
               "--only", names]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def test_a_run_trains_as_recorded():
    result = check("rigl")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.count("identical") == 1


@pytest.mark.slow
def test_every_recorded_run_trains_as_recorded():
    """Every method, a lottery ticket found through its pruning run, and RigL on two gloo processes (make
    test-slow; the same as ``python scripts/recorded_runs.py check tests/recorded/runs.json``)."""
    result = check("dense,static_erk,set,rigl,rigl_sm,snfs,small_dense,pruning,lottery,rigl_2_processes")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.count("identical") == 10


def test_a_checkpoint_of_the_previous_layout_resumes(tmp_path):
    """The run of the recorded checkpoint, resumed at its last epoch, ends with that run's own summary."""
    shutil.copy(RECORDED / "old_layout" / "checkpoint.pt", tmp_path / "checkpoint.pt")
    expected = json.loads((RECORDED / "old_layout" / "expected_summary.json").read_text())
    cfg = compose_config("scale=smoke", "train.epochs=2", "model.width=0.5", "masking=rigl", "masking.delta_t=5",
                         "threads=1")  # fmt: skip
    sizes = {name: tensor.numel() for name, tensor in torch.load(tmp_path / "checkpoint.pt")["model"].items()}
    summary = run(cfg, tmp_path)
    for key in ("test_acc", "val_acc", "density", "layer_densities", "flops", "exploration", "epochs", "steps"):
        assert summary[key] == expected[key], key
    # The recording's history, with "density" as it is named since issue 25: its old value (every masked
    # layer) is density_all_layers, and density is recounted over the budget (uniform: all but the first layer).
    budget = summary["budgeted_layers"]
    assert budget and len(budget) < len(summary["layer_densities"])
    for entry, recorded in zip(summary["history"], expected["history"], strict=True):
        assert entry["density_all_layers"] == recorded["density"]
        layers = recorded["layer_densities"]
        active = sum(round(layers[name] * sizes[name]) for name in budget)
        assert entry["density"] == active / sum(sizes[name] for name in budget) != recorded["density"]
        kept = ("density", "density_all_layers")
        assert {k: v for k, v in entry.items() if k not in kept} == {k: v for k, v in recorded.items() if k not in kept}
    assert summary["history"][-1]["density"] == summary["density"]


def test_the_comparison_is_exact(monkeypatch):
    """A last-bit change of an accuracy, one mask's digest, a missing history key: each is a difference."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    differences = importlib.import_module("recorded_runs").differences
    recorded = json.loads((RECORDED / "runs.json").read_text())["rigl"]
    assert differences(recorded, json.loads(json.dumps(recorded))) == []
    changed = json.loads(json.dumps(recorded))
    changed["summary"]["test_acc"] += 1e-12
    changed["masks"][next(iter(changed["masks"]))] = "0" * 16
    del changed["history"][1]["lr"]
    found = differences(recorded, changed)
    assert len(found) == 3 and found[0].startswith(".history[1].lr: only in the recording")
    assert any(line.startswith(".summary.test_acc") for line in found)
