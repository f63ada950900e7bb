"""The Makefile's targets pass a user's options on (checked with ``make -n``: what would run, nothing run)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(*arguments: str) -> list[str]:
    result = subprocess.run(["make", "-n", "-C", str(ROOT), *arguments], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("target", ["demo", "demo-seeds", "fmnist"])
def test_the_data_fetch_and_the_runs_take_the_dataset_options_of_run_args(target):
    lines = planned(target, "RUN_ARGS=dataset.root=/data/elsewhere hydra.launcher.partition=gpu")
    fetch = next(line for line in lines if "fetch_data.py" in line)
    assert fetch.endswith("dataset=fashion_mnist dataset.root=/data/elsewhere")  # not the launcher's options
    run = next(line for line in lines if "main.py" in line)
    assert "dataset.root=/data/elsewhere" in run and "hydra.launcher.partition=gpu" in run
