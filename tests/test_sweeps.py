"""The Optuna (alpha, delta_t) sweep through main.py: stored studies, per-trial seeds, crashed trials."""

import json
import subprocess
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]


def test_a_stored_sweep_survives_crashed_trials_and_averages_its_seeds(tmp_path):
    root = tmp_path / "runs"  # does not exist yet: the study's SQLite file is created inside it
    storage = f"sqlite:///{root}/optuna.db"  # the default storage, ${output_root}/optuna.db
    command = [
        sys.executable, str(ROOT / "main.py"), "-m", "experiment=sweep_alpha_dt", "scale=smoke", "masking.density=0.2",
        "train.epochs=1", "sweep_trials=4", f"output_root={root}",
        "masking.alpha=interval(0.5, 1.5)",  # the search space, narrowed: alpha > 1 is invalid, those trials crash
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    study = optuna.load_study(study_name="alpha_dt-digits-rigl-0.2", storage=storage)
    states = [trial.state for trial in study.trials]
    assert len(states) == 4
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.params["masking.alpha"] <= 1.0
            runs = list(tmp_path.rglob(f"masking.alpha={trial.params['masking.alpha']}*/seed=*/summary.json"))
            val = [json.loads(run.read_text())["val_acc"] for run in runs]
            assert len(val) == 2 and abs(trial.value - sum(val) / 2) < 1e-9


def test_the_parallel_launcher_runs_trials_and_grid_runs_side_by_side(tmp_path):
    root = tmp_path / "runs"
    common = [sys.executable, str(ROOT / "main.py"), "-m", "scale=smoke", "train.epochs=1", f"output_root={root}",
              "hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]  # fmt: skip

    sweep = [*common, "experiment=sweep_alpha_dt", "masking.density=0.2", "sweep_trials=4", "grid_seeds=0"]
    result = subprocess.run(sweep, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Joblib.Parallel(n_jobs=2,backend=loky") == 2  # Optuna asks two trials at a time
    assert result.stdout.count("is launching 2 jobs") == 2
    study = optuna.load_study(study_name="alpha_dt-digits-rigl-0.2", storage=f"sqlite:///{root}/optuna.db")
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4

    grid = [*common, "masking=rigl", "masking.density=0.1,1.5"]  # the second run's config is invalid
    result = subprocess.run(grid, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "masking.density=1.5 is out of range" in result.stdout + result.stderr
    finished = sorted(path.parent.name for path in (root / "digits-small_cnn-rigl").glob("*/summary.json"))
    assert finished == ["masking.density=0.1,masking=rigl,train.epochs=1"]  # the valid run ran to its end
