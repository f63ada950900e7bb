"""Each run computes with its share of the cores: ``threads=auto`` divides them among the runs at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rigl_repro.errors import ConfigError
from rigl_repro.launchers import usable_cores
from rigl_repro.run.threads import thread_count

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "setting, cores, sharing, environ, expected",
    [
        (3, 16, 4, {"OMP_NUM_THREADS": "8"}, 3),  # a number is taken as it is
        ("auto", 16, 1, {}, 16),  # one run: every core it may use
        ("auto", 16, 3, {}, 5),  # three runs at once: a third each, rounded down
        ("auto", 2, 3, {}, 1),  # never fewer than one
        ("auto", 16, 1, {"SLURM_CPUS_PER_TASK": "4"}, 4),  # a SLURM task's own cores
        ("auto", 16, 2, {"SLURM_CPUS_PER_TASK": "4"}, 2),
        ("auto", 16, 4, {"OMP_NUM_THREADS": "6", "SLURM_CPUS_PER_TASK": "4"}, 6),  # an explicit choice wins
        ("auto", 16, 1, {"OMP_NUM_THREADS": ""}, 16),  # empty or nonsense values are not a choice
        ("auto", 16, 0, {"OMP_NUM_THREADS": "x", "SLURM_CPUS_PER_TASK": "0"}, 16),
    ],
)
def test_thread_count(setting, cores, sharing, environ, expected):
    assert thread_count(setting, cores, sharing, environ) == expected


@pytest.mark.parametrize("setting", [0, -2, "many", 2.5, True])
def test_bad_thread_settings_are_refused_in_one_line(setting):
    with pytest.raises(ConfigError, match=rf"^threads={setting!r} is invalid; expected auto or a number"):
        thread_count(setting, 4, 1, {})


def sweep_threads(tmp_path, *launcher):
    """Run two one-epoch runs with -m, and return the CPU thread counts their summaries recorded."""
    tmp_path.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    overrides = ["dataset=digits", "masking=static", "train.epochs=1", "logger.mode=disabled", "seed=0,1",
                 f"output_root={tmp_path}", *launcher, "-m"]  # fmt: skip
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), *overrides], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = sorted(tmp_path.rglob("summary.json"))
    assert len(summaries) == 2
    return [json.loads(path.read_text())["cpu_threads"] for path in summaries]


def test_runs_launched_together_share_the_cores_and_runs_in_turn_use_them_all(tmp_path):
    cores = usable_cores()
    assert sweep_threads(tmp_path / "in_turn") == [cores, cores]
    parallel = sweep_threads(tmp_path / "together", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2")
    assert parallel == [max(1, cores // 2)] * 2
