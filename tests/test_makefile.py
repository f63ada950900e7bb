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
    assert "dataset=fashion_mnist dataset.root=/data/elsewhere" in fetch  # not the launcher's options
    run = next(line for line in lines if "main.py" in line)
    assert "dataset.root=/data/elsewhere" in run and "hydra.launcher.partition=gpu" in run


@pytest.mark.parametrize(
    "target, datasets",
    [("table1", ["cifar10"]), ("table2", ["cifar10"]), ("table3", ["cifar100"]), ("table5", ["cifar10", "cifar100"]),
     ("sweep-alpha-dt", ["cifar10"]), ("sweep-lr", ["cifar10"]), ("fig3", ["cifar10", "cifar100"])],
)  # fmt: skip
def test_a_paper_target_fetches_its_datasets_once_before_any_run(target, datasets):
    lines = planned(target, "RUN_ARGS=dataset.root=/data/cifar")
    first_run = next(number for number, line in enumerate(lines) if "main.py" in line)
    fetches = [line for line in lines[:first_run] if "fetch_data.py" in line]
    assert len(fetches) == 1 and " && " in fetches[0]  # a missing dataset stops the target before any run
    assert [f"dataset={name} dataset.root=/data/cifar" in fetches[0] for name in datasets] == [True] * len(datasets)
    assert fetches[0].count("fetch_data.py") == len(datasets)
    assert not any("fetch_data.py" in line for line in planned(target, "SCALE=smoke"))  # the embedded digits
