"""The grid sweeper: its jobs, the report of its failed runs (each reason once), a job's error kept off the
console, and (with the Optuna one) a submission the scheduler refuses."""

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


def test_a_grid_s_jobs_are_hydra_s_cartesian_product_with_the_command_line_last():
    from rigl_repro.sweeps.grid import grid_jobs

    jobs = grid_jobs(["seed=0,1,2", "masking.density=0.1,0.2", "dataset=digits", "seed=5"])  # params, then the line
    assert jobs == [
        ["seed=5", "masking.density=0.1", "dataset=digits"],
        ["seed=5", "masking.density=0.2", "dataset=digits"],
    ]


def failures(*pairs):
    from rigl_repro.errors import ConfigError

    return [(overrides, ConfigError(message)) for overrides, message in pairs]


def test_runs_that_fail_for_one_reason_say_it_once_with_the_count():
    from rigl_repro.sweeps.grid import failure_report

    missing = "Fashion-MNIST is not in data/FashionMNIST/raw and dataset.download=false; apt-get install ..."
    runs = [f"masking={name} seed={seed}" for name in ("static", "set", "rigl") for seed in (0, 1)]
    every = failures(*((overrides, missing) for overrides in runs))
    assert failure_report(every, 6) == f"error: 6 of 6 runs failed: {missing}"
    assert failure_report(every[:2], 6) == (
        f"error: 2 of 6 runs failed (masking=static seed=0; masking=static seed=1): {missing}"
    )


def test_runs_that_fail_for_several_reasons_say_each_once_with_its_runs():
    from rigl_repro.sweeps.grid import failure_report

    report = failure_report(failures(*((f"seed={seed}", "no data") for seed in range(5)), ("seed=9", "diverged")), 8)
    assert report.splitlines() == [
        "error: 6 of 8 runs failed:",
        "  seed=0; seed=1; seed=2 and 2 more: no data",
        "  seed=9: diverged",
    ]


@pytest.mark.parametrize("diverged, code", [(False, 2), (True, 3)])
def test_a_grid_with_failed_runs_exits_2_or_3_when_every_one_diverged(caplog, diverged, code):
    from rigl_repro.errors import ConfigError, TrainingDiverged
    from rigl_repro.sweeps.grid import exit_after_failures

    error = TrainingDiverged("the loss is NaN") if diverged else ConfigError("no data")
    with pytest.raises(SystemExit) as exited:
        exit_after_failures([("seed=0", error), ("seed=1", error)], 2)
    assert exited.value.code == code
    assert [record.getMessage() for record in caplog.records] == [f"error: 2 of 2 runs failed: {error}"]


def test_a_job_s_error_goes_to_its_log_file_and_not_to_the_console(tmp_path):
    import io
    import logging

    from rigl_repro.sweeps.grid import log_in_job_files

    logger, parent = logging.getLogger("rigl_repro_test.job.main"), logging.getLogger("rigl_repro_test.job")
    console = logging.StreamHandler(io.StringIO())
    file = logging.FileHandler(tmp_path / "main.log")
    parent.addHandler(console)
    parent.addHandler(file)
    try:
        log_in_job_files(logger, "error: no data")
    finally:
        parent.removeHandler(console)
        parent.removeHandler(file)
        file.close()
    assert (tmp_path / "main.log").read_text() == "error: no data\n"
    assert console.stream.getvalue() == ""
