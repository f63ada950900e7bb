"""The grid sweeper (and the Optuna one) when the scheduler refuses a submission."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

REFUSAL = "sbatch: error: invalid partition specified: nosuchpartition"


@pytest.fixture
def refusing_sbatch(tmp_path):
    """A PATH whose ``sbatch`` refuses every job as SLURM does for an unknown partition (on a machine with or
    without SLURM)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\necho 'sbatch: error: Batch job submission failed' >&2\necho '{REFUSAL}' >&2\nexit 1\n")
    sbatch.chmod(0o755)
    srun = bin_dir / "srun"  # submitit looks for it before it submits anything; never run here
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize(
    "sweep, runs",
    [(["seed=0,1"], "2 runs"), (["experiment=sweep_alpha_dt", "masking.density=0.2", "sweep_trials=2"], "1 run")],
    ids=["grid", "optuna"],
)  # fmt: skip
def test_a_refused_submission_is_one_line_and_runs_nothing(tmp_path, refusing_sbatch, sweep, runs):
    command = [
        sys.executable, str(ROOT / "main.py"), "-m", "scale=smoke", "hydra/launcher=slurm",
        "hydra.launcher.partition=nosuchpartition", f"output_root={tmp_path / 'runs'}", "logger.mode=disabled",
        *sweep,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=refusing_sbatch, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert f"error: the launcher could not submit {runs}: {REFUSAL}" in output, output
    assert not list((tmp_path / "runs").rglob("summary.json"))
