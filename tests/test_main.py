"""``main.py`` as a user runs it: Hydra's help, a real run with W&B offline, and clean refusals."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main_py(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True)


def test_help_lists_the_config_groups(tmp_path):
    result = main_py("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "masking: dense, lottery, pruning, rigl, rigl_sg, rigl_sm, set, small_dense, snfs, static" in result.stdout
    assert "dataset: cifar10, cifar100, digits, fashion_mnist" in result.stdout
    assert "model: lenet5, resnet50, small_cnn, wrn22_2" in result.stdout


def test_a_run_with_offline_wandb_writes_its_outputs_under_output_root(tmp_path):
    overrides = ("dataset=digits", "train.epochs=2", "masking.delta_t=10", f"output_root={tmp_path}/runs")
    result = main_py(*overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "digits-small_cnn-rigl" / "dataset=digits,masking.delta_t=10,train.epochs=2"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["train"]["epochs"] == 2 and summary["epochs"] == 2
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run was written"
    assert not (tmp_path / "wandb").exists()


def test_a_bad_option_exits_non_zero_with_one_line_naming_it(tmp_path):
    overrides = ("dataset=digits", "logger.mode=disabled", "masking.alpha=1.5", f"output_root={tmp_path}")
    result = main_py(*overrides, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "masking.alpha=1.5 is out of range" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("checkpoint.pt"))
