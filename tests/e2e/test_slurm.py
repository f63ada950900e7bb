"""A smoke sweep through ``hydra/launcher=slurm`` on a real single-node SLURM cluster started for the test
(``scripts/slurm_local.sh``; installing SLURM needs root and Debian's packages). Run with ``make test-slurm``."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

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
    assert len(logs) == 4 and all("done: test accuracy" in log.read_text() for log in logs)
    array = {log.name.split("_")[0] for log in logs}
    assert sorted(final_states(array, env)) == ["COMPLETED"] * 4


def final_states(jobs, env, patience_s=60):
    """The accounting states of ``jobs``' tasks once none is still running: submitit hands back a result as
    soon as the job has written it, a moment before SLURM records the job's end."""
    deadline = time.monotonic() + patience_s
    while True:
        accounting = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(jobs)], env=env, capture_output=True,
            text=True, check=True,
        ).stdout.split()  # fmt: skip
        states = [line.split("|")[1] for line in accounting]
        if not {"PENDING", "RUNNING", "COMPLETING"} & set(states) or time.monotonic() > deadline:
            return states
        time.sleep(1)


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
