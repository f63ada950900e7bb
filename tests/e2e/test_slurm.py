"""A smoke sweep through ``hydra/launcher=slurm`` on a real single-node SLURM cluster started for the test
(``scripts/slurm_local.sh``; installing SLURM needs root and Debian's packages). Run with ``make test-slurm``."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("slurm")
    if os.geteuid() != 0 and subprocess.run(["which", "slurmctld"], capture_output=True).returncode:
        pytest.skip("SLURM is not installed and installing it needs root")
    subprocess.run([str(SCRIPT), "start", str(directory)], check=True, timeout=900)
    yield directory
    subprocess.run([str(SCRIPT), "stop", str(directory)], timeout=60)


def test_a_smoke_sweep_runs_every_job_under_slurm(cluster, tmp_path):
    env = {**os.environ, "SLURM_CONF": str(cluster / "slurm.conf")}
    command = [
        sys.executable, str(ROOT / "main.py"), "-m", "experiment=table2", "scale=smoke", "variant=static,rigl",
        "masking.density=0.1", "train.epochs=1", f"output_root={tmp_path}",
        "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=5",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    summaries = [json.loads(path.read_text()) for path in tmp_path.rglob("summary.json")]
    assert sorted((s["config"]["variant"], s["config"]["seed"]) for s in summaries) == [
        ("rigl", 0), ("rigl", 1), ("static", 0), ("static", 1)
    ]
    logs = list((tmp_path / ".submitit").rglob("*_log.out"))
    assert len(logs) == 4 and all("done: val " in log.read_text() for log in logs)
    array = {log.name.split("_")[0] for log in logs}
    assert sorted(final_states(array, env)) == ["COMPLETED"] * 4


def test_a_job_of_two_tasks_trains_one_run_on_two_processes(cluster, tmp_path):
    env = {**os.environ, "SLURM_CONF": str(cluster / "slurm.conf"), "OMP_NUM_THREADS": "1"}
    run = ["dataset=digits", "masking=rigl", "train.epochs=3", "masking.delta_t=8", "logger.mode=disabled"]
    command = [
        sys.executable, str(ROOT / "main.py"), "-m", *run, f"output_root={tmp_path / 'two'}",
        "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=5",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    single = [sys.executable, str(ROOT / "main.py"), *run, f"output_root={tmp_path / 'one'}"]
    assert subprocess.run(single, cwd=tmp_path, env=env, capture_output=True, timeout=600).returncode == 0

    (two,) = [json.loads(path.read_text()) for path in (tmp_path / "two").rglob("summary.json")]
    (one,) = [json.loads(path.read_text()) for path in (tmp_path / "one").rglob("summary.json")]
    assert two["processes"] == 2 and one["processes"] == 1
    for ours, theirs in zip(one["history"], two["history"], strict=True):  # tolerances of test_distributed.py
        assert abs(ours["train_loss"] - theirs["train_loss"]) < 1e-4
        assert abs(ours["val_acc"] - theirs["val_acc"]) <= 1 / 250 + 1e-12
    logs = sorted((tmp_path / "two" / ".submitit").rglob("*_log.out"))  # one per task: <job>_0, <job>_1
    assert [log.name.split("_")[1] for log in logs] == ["0", "1"]
    first, second = (log.read_text() for log in logs)
    assert "rank 0 of 2 (gloo, cpu)" in first and "done: val " in first
    assert "done: val " not in second  # rank 1 trains in silence: one log of the run
    assert final_states({logs[0].name.split("_")[0]}, env) == ["COMPLETED"]


def test_an_optuna_sweep_s_slurm_jobs_report_their_epochs_and_bad_trials_are_pruned(cluster, tmp_path):
    env = {**os.environ, "SLURM_CONF": str(cluster / "slurm.conf"), "OMP_NUM_THREADS": "1"}
    storage = f"sqlite:///{tmp_path}/pruned.db"  # on the disk the node shares with the sweeper
    command = [
        sys.executable, str(ROOT / "main.py"), "-m", "hydra/sweeper=optuna", "dataset=digits", "scale=smoke",
        "masking.alpha=interval(0.1,0.6)", "train.lr=choice(0.05,0.0005)", "hydra/sweeper/sampler=random",
        "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.n_trials=4",
        f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=p", "logger.mode=disabled",
        f"output_root={tmp_path / 'runs'}", "hydra/launcher=slurm", "hydra.launcher.partition=debug",
        "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=5",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    study = optuna.load_study(study_name="p", storage=storage)
    states = [trial.state.name for trial in study.trials]
    assert "PRUNED" in states and "COMPLETE" in states, states
    assert all(trial.intermediate_values for trial in study.trials)  # written by the jobs on the node
    logs = [log.read_text() for log in (tmp_path / "runs" / ".submitit").rglob("*_log.out")]
    assert sum("pruned by its study's pruner" in log for log in logs) == states.count("PRUNED")


def final_states(jobs, env, patience_s=60, every_attempt=False):
    """The accounting states of ``jobs``' tasks (``every_attempt``: of each run of a requeued job, in order)
    once none is still running: submitit hands back a result as soon as the job has written it, a moment
    before SLURM records the job's end."""
    deadline = time.monotonic() + patience_s
    while True:
        every = ["-D"] if every_attempt else []
        accounting = subprocess.run(
            ["sacct", "-n", "-X", "-P", *every, "-o", "JobID,State", "-j", ",".join(jobs)], env=env,
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        states = [line.split("|")[1] for line in accounting]
        if not {"PENDING", "RUNNING", "COMPLETING"} & set(states) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def signal_when_logged(log_folder: Path, line: str, env: dict[str, str], timeout_s: float = 900) -> str:
    """Send SIGUSR2 (SLURM's time-limit warning under submitit) to the steps of the one job whose log under
    ``log_folder`` first shows ``line``; returns the job's id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for log in log_folder.rglob("*_0_log.out"):
            if line in log.read_text():
                job = log.name.split("_")[0]
                subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True, timeout=60)
                return job
        time.sleep(0.2)
    raise AssertionError(f"no job under {log_folder} logged {line!r} within {timeout_s} s")


def test_a_job_at_its_time_limit_is_requeued_and_ends_as_an_uninterrupted_run(cluster, tmp_path):
    # One thread per job (SLURM passes the environment on): the two jobs share the machine's cores.
    env = {**os.environ, "SLURM_CONF": str(cluster / "slurm.conf"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, str(ROOT / "main.py"), "-m", "dataset=digits", "masking=rigl", "train.epochs=300",
        "train.lr_decay_every=1000000", "checkpoint.every_epochs=20", "logger.mode=disabled",
        "hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
        "hydra.launcher.max_num_timeout=3",
    ]  # fmt: skip
    # The cut job gets the signal SLURM sends ahead of a time limit (submitit's --signal=USR2@...) once it has
    # logged epoch 41: mid-way between two checkpoints, whatever the machine's speed (3 to 10 epochs a second
    # have been seen). A time limit's own signal lands at a wall-clock time instead, which on a slow machine left
    # too little of each attempt for the run to end within the test's patience. Submitit counts a signal in a
    # job of under 10 minutes as a time-out either way, so this is the path a real limit takes: checkpoint, requeue
    # (SLURM holds the requeued job about 2.5 minutes), resume.
    # No LR decay: its denormal rates would slow the CPU down.
    sweeps = {
        name: subprocess.Popen([*command, f"output_root={tmp_path / name}"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in ("whole", "cut")
    }  # fmt: skip
    signal_when_logged(tmp_path / "cut" / ".submitit", "epoch 41/300 ", env)
    for name, sweep in sweeps.items():
        output = sweep.communicate(timeout=1200)[0]
        assert sweep.returncode == 0, f"{name}: {output[-3000:]}"

    (job_log,) = (tmp_path / "cut" / ".submitit").rglob("*_log.out")
    # Each signal checkpointed the step it arrived at, and the next attempt resumed at that very step.
    text = job_log.read_text()
    stopped = re.findall(r"SIGUSR2: checkpointed in epoch \d+ after step (\d+)", text)
    resumed = re.findall(r"resumed from \S+ at epoch \d+/\d+, step (\d+)", text)
    assert stopped and resumed == stopped, text[-3000:]
    job = job_log.name.split("_")[0]
    attempts = final_states([job], env, every_attempt=True)
    assert len(attempts) >= 2 and attempts[-1] == "COMPLETED", attempts  # requeued at least once

    whole, cut = (json.loads(next((tmp_path / name).rglob("summary.json")).read_text()) for name in sweeps)
    for key in ("val_acc", "test_acc", "steps", "layer_densities"):
        assert cut[key] == whole[key], key
    assert [epoch["train_loss"] for epoch in cut["history"]] == [epoch["train_loss"] for epoch in whole["history"]]


def test_a_second_cluster_runs_beside_the_first(cluster, tmp_path_factory):
    second = tmp_path_factory.mktemp("slurm2")
    subprocess.run([str(SCRIPT), "start", str(second)], check=True, timeout=900)
    try:
        for directory in (cluster, second):
            env = {**os.environ, "SLURM_CONF": str(directory / "slurm.conf")}
            result = subprocess.run(["srun", "-p", "debug", "echo", "ok"], env=env, capture_output=True, text=True,
                                    timeout=60)  # fmt: skip
            assert result.stdout.strip() == "ok", result.stderr
    finally:
        subprocess.run([str(SCRIPT), "stop", str(second)], timeout=60)
    env = {**os.environ, "SLURM_CONF": str(cluster / "slurm.conf")}
    result = subprocess.run(["srun", "-p", "debug", "echo", "ok"], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr  # stopping the second left the first (and munged) running


def test_stopping_the_cluster_stops_only_its_own_daemons(cluster):
    bystander = subprocess.Popen(["sleep", "60"])
    pids = [int(line.split()[1]) for line in (cluster / "pids").read_text().splitlines()]
    subprocess.run([str(SCRIPT), "stop", str(cluster)], check=True, timeout=60)
    time.sleep(2)
    for pid in pids:
        state = Path(f"/proc/{pid}/stat")
        assert not state.exists() or state.read_text().split()[2] == "Z", f"daemon {pid} still runs"
    assert bystander.poll() is None
    bystander.kill()
