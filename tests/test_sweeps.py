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
