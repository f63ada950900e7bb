"""``main.py`` as a user runs it: Hydra's help, a real run with W&B offline or CSV files, and clean refusals."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def main_py(*args, cwd, env=None):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          env=env)  # fmt: skip


def with_wandb_default() -> dict[str, str]:
    """This environment without the tests' WANDB_MODE=disabled (tests/conftest.py): W&B in its configured mode."""
    return {key: value for key, value in os.environ.items() if key != "WANDB_MODE"}


def test_help_lists_the_config_groups(tmp_path):
    result = main_py("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "masking: dense, lottery, pruning, rigl, rigl_sg, rigl_sm, set, small_dense, snfs, srigl, static" in result.stdout
    assert "dataset: cifar10, cifar100, digits, fashion_mnist" in result.stdout
    assert "model: lenet5, resnet50, small_cnn, wrn22_2" in result.stdout
    assert "logger: csv, wandb" in result.stdout


def test_help_describes_every_top_level_option_and_group(tmp_path):
    """Each option of conf/config.yaml (and the groups' own top-level keys) has its line in --help, with the
    values it takes; so has every config group."""
    from tests.helpers import compose_config

    help_text = main_py("--help", cwd=tmp_path).stdout
    described = help_text.split("== Top-level options ==")[1].split("== Choices ==")[0]
    options = [key for key in compose_config() if key not in ("dataset", "model", "train", "masking", "logger")]
    for key in options:
        assert f"\n{key}=" in described or f"\n{key}." in described, f"{key} is not described in --help"
    for group in sorted(path.name for path in (ROOT / "conf").iterdir() if path.is_dir() and path.name != "hydra"):
        assert group in described, f"group {group} is not described in --help"
    assert "device=auto          auto (CUDA if there is one) | cpu | cuda | cuda:N" in described


def test_a_run_with_offline_wandb_writes_its_outputs_under_output_root(tmp_path):
    overrides = ("dataset=digits", "train.epochs=2", "masking.delta_t=10", f"output_root={tmp_path}/runs")
    result = main_py(*overrides, cwd=tmp_path, env=with_wandb_default())
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "digits-small_cnn-rigl" / "dataset=digits,masking.delta_t=10,seed=0,train.epochs=2"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["train"]["epochs"] == 2 and summary["epochs"] == 2
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run was written"
    assert not (tmp_path / "wandb").exists()


def csv_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_run_with_the_csv_logger_writes_csv_files_in_the_same_folder_and_never_imports_wandb(tmp_path):
    overrides = ("dataset=digits", "train.epochs=2", "masking.delta_t=10", "logger=csv", f"output_root={tmp_path}/runs")
    result = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "main.py"), *overrides], cwd=tmp_path,
                            capture_output=True, text=True, env=with_wandb_default())  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # The logger is not part of the folder's name: the folder of the same run with W&B (above).
    run_dir = tmp_path / "runs" / "digits-small_cnn-rigl" / "dataset=digits,masking.delta_t=10,seed=0,train.epochs=2"
    summary = json.loads((run_dir / "summary.json").read_text())
    history = csv_rows(run_dir / "history.csv")
    assert [int(row["epoch"]) for row in history] == [1, 2]
    assert [float(row["val_acc"]) for row in history] == [entry["val_acc"] for entry in summary["history"]]
    values = {row["key"]: row["value"] for row in csv_rows(run_dir / "summary.csv")}
    assert float(values["test_acc"]) == summary["test_acc"]
    assert (run_dir / "mask_updates.csv").exists()
    assert not (run_dir / "wandb").exists() and not list(tmp_path.rglob("wandb"))
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "rigl_repro.loggers" in imported and not any(name.split(".")[0] == "wandb" for name in imported)


def test_a_sweep_with_the_csv_logger_writes_each_runs_history(tmp_path):
    overrides = ("dataset=digits", "train.epochs=1", "masking.delta_t=10", "logger=csv", "seed=0,1",
                 f"output_root={tmp_path}")  # fmt: skip
    result = main_py("-m", *overrides, cwd=tmp_path, env=with_wandb_default())
    assert result.returncode == 0, result.stderr[-2000:]
    run_dirs = sorted(path.parent for path in tmp_path.rglob("history.csv"))
    assert [path.name for path in run_dirs] == ["dataset=digits,masking.delta_t=10,seed=0,train.epochs=1",
                                                "dataset=digits,masking.delta_t=10,seed=1,train.epochs=1"]  # fmt: skip
    for run_dir in run_dirs:
        assert [row["epoch"] for row in csv_rows(run_dir / "history.csv")] == ["1"]
        assert "test_acc" in {row["key"] for row in csv_rows(run_dir / "summary.csv")}
    assert not list(tmp_path.rglob("wandb"))


def test_a_bad_option_exits_non_zero_with_one_line_naming_it(tmp_path):
    overrides = ("dataset=digits", "logger.mode=disabled", "masking.alpha=1.5", f"output_root={tmp_path}")
    result = main_py(*overrides, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "masking.alpha=1.5 is out of range" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("checkpoint.pt"))


@pytest.mark.slow  # 15 s of two trainings; the lock itself: tests/training/test_run_folder.py, in-process
def test_a_second_identical_command_is_refused_while_the_first_trains(tmp_path):
    overrides = ("dataset=digits", "logger.mode=disabled", "train.epochs=200", f"output_root={tmp_path}")
    first = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *overrides], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        lock = tmp_path / "digits-small_cnn-rigl" / "dataset=digits,seed=0,train.epochs=200" / ".lock"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None and not (lock.exists() and lock.read_text()):
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before the second started"
        second = main_py(*overrides, cwd=tmp_path)
    finally:
        first.kill()
        first.wait()
    output = second.stdout + second.stderr
    assert second.returncode == 2 and "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"is in use by process {first.pid} on" in errors[0]


def test_a_sweep_with_bad_values_is_refused_in_one_line_before_any_run_starts(tmp_path):
    overrides = ("dataset=digits", "logger.mode=disabled", "train.epochs=1", f"output_root={tmp_path}/runs")
    result = main_py(*overrides, "masking=rigl", "masking.density=0.1,1.5,2.5", "-m", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output and "Error executing job" not in output
    (line,) = output.strip().splitlines()
    assert line.startswith("error: masking.density=1.5 is out of range") and "(1 of 3 runs)" in line
    assert "also masking.density=2.5 is out of range" in line
    assert list(tmp_path.iterdir()) == []  # not even the output root


def test_a_run_with_wandb_disabled_never_imports_it(tmp_path):
    """W&B's wheel stays off the GPU machine (scripts/gpu_check.py): a disabled run must not need it."""
    overrides = ("dataset=digits", "logger.mode=disabled", "train.epochs=1", f"output_root={tmp_path}/runs")
    command = [sys.executable, "-X", "importtime", str(ROOT / "main.py"), *overrides]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=with_wandb_default())
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert {"torch", "hydra", "rigl_repro.loggers"} <= imported  # the list is complete enough to tell
    assert sorted(name for name in imported if name.split(".")[0] == "wandb") == []


@pytest.mark.slow  # 14 s under torchrun; two ranks as one run: tests/training/test_distributed.py, by default
def test_torchrun_trains_each_seed_with_two_processes_and_rank_0_writes_it(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*torchrun, str(ROOT / "main.py"), "dataset=digits", "train.epochs=2", "masking.delta_t=10",
               "trial_seeds=[0,1]", f"output_root={tmp_path}/runs"]  # fmt: skip  (two runs, one process group)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env=with_wandb_default())  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "digits-small_cnn-rigl").iterdir()
    for seed in (0, 1):
        summary = json.loads((run_dir / f"seed={seed}" / "summary.json").read_text())
        assert summary["processes"] == 2 and summary["config"]["seed"] == seed and len(summary["history"]) == 2
        assert len(list((run_dir / f"seed={seed}" / "wandb").glob("offline-run-*"))) == 1  # rank 0's W&B run
    log = (run_dir / "main.log").read_text()
    assert log.count("rank 0 of 2 (gloo, cpu)") == 2 and log.count("epoch 2/2") == 2  # one log of the run
    assert "Traceback" not in result.stdout + result.stderr


SIGNAL_AT_STEP = """
import runpy, signal, sys
from rigl_repro.sparsity import SparseEngine
original = SparseEngine.step
def step(self):
    updated = original(self)
    if self.step_count == {step}:
        signal.raise_signal(signal.{name})
    return updated
SparseEngine.step = step
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("{main}", run_name="__main__")
"""


# SIGINT's path through main.py is SIGTERM's; both are tested in-process (tests/training/test_preemption.py)
@pytest.mark.parametrize("name, code", [pytest.param("SIGINT", 130, marks=pytest.mark.slow), ("SIGTERM", 143)])
def test_ctrl_c_or_kill_saves_the_run_says_how_to_resume_in_one_line_and_the_next_start_resumes(tmp_path, name, code):
    overrides = ["dataset=digits", "train.epochs=2", "logger.mode=disabled", "threads=1", f"output_root={tmp_path}"]
    script = SIGNAL_AT_STEP.format(step=27, name=name, main=ROOT / "main.py")
    stopped = subprocess.run([sys.executable, "-c", script, *overrides], cwd=ROOT, capture_output=True, text=True)
    assert stopped.returncode == code, stopped.stderr[-2000:]
    output = stopped.stdout + stopped.stderr
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    (line,) = [line for line in output.splitlines() if f"{name}: stopped" in line]
    assert line.endswith(f"{name}: stopped in epoch 2 after step 27; the checkpoint is saved: run the same command "
                         "to resume")  # fmt: skip
    (folder,) = (tmp_path / "digits-small_cnn-rigl").iterdir()
    assert (folder / "checkpoint.pt").exists() and not (folder / "summary.json").exists()
    resumed = main_py(*overrides, cwd=tmp_path)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "at epoch 1/2, step 27" in output
    (done,) = [line for line in output.splitlines() if "done: " in line]
    assert f"in {folder}" in done and "val " in done and "test " in done and "training FLOPs" in done


def test_runs_refused_once_started_leave_no_folder_behind(tmp_path):
    """A grid whose data are missing: every run is refused when it loads them, after Hydra made its folder."""
    root = tmp_path / "runs"
    result = main_py("-m", "dataset=fashion_mnist", f"dataset.root={tmp_path}/nowhere", "dataset.system_root=null",
                     "masking=static,set", "train.epochs=1", "logger.mode=disabled", "threads=1",
                     f"output_root={root}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert sorted(path.name for path in root.iterdir()) == ["multirun.yaml"]  # the sweep's record, no run folders
