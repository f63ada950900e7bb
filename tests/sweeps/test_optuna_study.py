"""The Optuna sweeper: its search space, its trial counting, and (alpha, delta_t) sweeps through main.py:
stored studies, per-trial seeds, crashed trials, a killed sweep resumed."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from rigl_repro.errors import ConfigError
from rigl_repro.sweeps import finished_trials, search_space
from rigl_repro.sweeps.optuna_study import HeartbeatStorage, OptunaStudySweeperBase, proposals_made

ROOT = Path(__file__).resolve().parents[2]


def test_the_search_space_reads_hydra_s_sweep_syntax_as_the_report_s_sweeper_did():
    space, fixed = search_space([
        "masking.alpha=interval(0.1, 0.6)", "masking.delta_t=range(50, 1000, step=50)",
        "train.lr=tag(log, interval(1e-3, 0.1))", "masking.distribution=choice(uniform, erk)", "masking.density=0.2",
        "masking.density=0.5", "seed=range(1, 3)", "seed=7",
    ])  # fmt: skip
    assert space == {
        "masking.alpha": FloatDistribution(0.1, 0.6),
        "masking.delta_t": IntDistribution(50, 1000, step=50),  # both ends included, as hydra-optuna-sweeper 1.3
        "train.lr": FloatDistribution(1e-3, 0.1, log=True),
        "masking.distribution": CategoricalDistribution(["uniform", "erk"]),
    }
    assert fixed == {"masking.density": "0.5", "seed": "7"}  # the last override of a key wins


def test_an_unsupported_sweep_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="Optuna cannot sample"):
        search_space(["masking.alpha=glob(*)"])
    with pytest.raises(ConfigError, match="drop shuffle"):  # a new order at each start breaks a resumed study
        search_space(["masking.delta_t=shuffle(range(50, 200, step=50))"])


def test_trials_queued_again_after_a_kill_are_counted_once():
    def trial(number, state, proposed=True, **system_attrs):
        value = 0.5 if state == TrialState.COMPLETE else None
        user_attrs = {"overrides": ["masking.alpha=0.3"]} if proposed else {}
        made = create_trial(state=state, value=value, user_attrs=user_attrs, system_attrs=system_attrs)
        made.number = number
        return made

    trials = [trial(0, TrialState.COMPLETE), trial(1, TrialState.FAIL), trial(2, TrialState.FAIL),
              trial(3, TrialState.COMPLETE, failed_trial=2, retry_history=[2]), trial(4, TrialState.FAIL, False),
              trial(5, TrialState.RUNNING)]  # fmt: skip
    # 1 failed by its run; 2 was stale and queued again as 3; 4's sweeper died while proposing it
    assert [t.number for t in finished_trials(trials)] == [0, 1, 3]
    assert proposals_made(trials) == 4  # 0, 1, 2 and 5


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with")
@pytest.mark.parametrize("cut", ["while proposing", "after proposing"])
def test_a_sweeper_killed_around_a_proposal_resumes_as_if_never_cut(tmp_path, cut):
    """A kill between two parameters of one proposal, or right after it, is invisible in what follows: the
    resumed sweeper proposes and runs the same trials as an uninterrupted one (fake objective, no launcher)."""
    space = {"masking.alpha": FloatDistribution(0.1, 0.6), "masking.delta_t": IntDistribution(50, 1000, step=50)}

    def sweeper(name):
        made = OptunaStudySweeperBase(
            study_name="s", storage=f"sqlite:///{tmp_path}/{name}.db", sampler={"seed": 123, "n_startup_trials": 2},
            heartbeat_interval=1, grace_period=2,
        )  # fmt: skip
        storage = made.open_storage()
        return made, optuna.create_study(study_name="s", storage=storage, direction="maximize", load_if_exists=True)

    def run(made, study, count):
        for _ in range(count):
            trial = made.propose(study, space, {"seed": "0"})
            study.tell(trial, -abs(trial.params["masking.alpha"] - 0.3) - trial.params["masking.delta_t"] / 1e4)

    whole, whole_study = sweeper("whole")
    run(whole, whole_study, 5)

    cut_sweeper, cut_study = sweeper("cut")
    run(cut_sweeper, cut_study, 2)
    if cut == "while proposing":  # the sweeper dies after sampling alpha, before delta_t
        cut_study.sampler = optuna.samplers.TPESampler(seed=123 + 2, n_startup_trials=2)
        cut_study.ask({"masking.alpha": space["masking.alpha"]})
    else:
        cut_sweeper.propose(cut_study, space, {"seed": "0"})
    resumed, resumed_study = sweeper("cut")
    resumed.requeue_stale_trials(resumed_study)
    states = [t.state for t in resumed_study.trials]
    queued = [TrialState.WAITING] if cut == "after proposing" else []  # only a complete proposal is queued again
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, *queued]
    run(resumed, resumed_study, 3)

    assert proposals(resumed_study) == proposals(whole_study)
    assert len(finished_trials(resumed_study.trials)) == 5
    complete = [t for t in resumed_study.trials if t.state == TrialState.COMPLETE]
    assert [t.user_attrs["overrides"] for t in complete] == [t.user_attrs["overrides"] for t in whole_study.trials]


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


@pytest.mark.slow  # 40 s: two sweeps through joblib; the launcher runs a grid by default (tests/test_launchers.py)
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

    grid = [*common, "masking=rigl", "masking.density=0.1,0.2"]
    result = subprocess.run(grid, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("is launching 2 jobs") == 1
    finished = sorted(path.parent.name for path in (root / "digits-small_cnn-rigl").glob("*/summary.json"))
    assert finished == ["masking.density=0.2,seed=0,train.epochs=1", "seed=0,train.epochs=1"]


def sweep_command(root, *extra):
    return [
        sys.executable, str(ROOT / "main.py"), "-m", "experiment=sweep_alpha_dt", "scale=smoke", "masking.density=0.2",
        "train.epochs=2", "sweep_trials=5", "hydra.sweeper.sampler.n_startup_trials=2", f"output_root={root}",
        "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2", "logger.mode=disabled", *extra,
    ]  # fmt: skip


def load(root):
    return optuna.load_study(study_name="alpha_dt-digits-rigl-0.2", storage=f"sqlite:///{root}/optuna.db")


def proposals(study):
    return [tuple(sorted(t.params.items())) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def trial_states(database):
    """The trials' states, read without creating anything (opening it with Optuna while the sweeper creates
    the storage would race the sweeper's schema set-up)."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            return [state for (state,) in connection.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # no file or no table yet
        return []


@pytest.mark.slow  # 25-35 s; test_a_sweeper_killed_around_a_proposal_resumes_as_if_never_cut covers it exactly
def test_a_killed_sweep_resumes_without_losing_or_repeating_trials(tmp_path):
    whole = subprocess.run(sweep_command(tmp_path / "whole"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    root = tmp_path / "killed"
    sweep = subprocess.Popen(sweep_command(root), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sweep.poll() is None:  # kill it while its third trial trains
        states = trial_states(root / "optuna.db")
        if states.count("COMPLETE") == 2 and "RUNNING" in states:
            break
        time.sleep(0.2)
    assert sweep.poll() is None, "the sweep ended before it could be killed"
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    assert [t.state for t in load(root).trials].count(optuna.trial.TrialState.RUNNING) == 1

    resumed = subprocess.run(sweep_command(root), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = load(root)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5 and optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the killed trial, queued again as a new one
    assert len(set(proposals(study))) == 5
    assert proposals(study) == proposals(load(tmp_path / "whole"))  # as if never interrupted, values included
    assert [t.value for t in study.trials if t.value is not None] == [t.value for t in load(tmp_path / "whole").trials]
    results = yaml.safe_load((root / "optuna" / "alpha_dt-digits-rigl-0.2.yaml").read_text())
    assert (results["complete"], results["failed"], results["best_value"]) == (5, 0, study.best_value)

    again = subprocess.run(sweep_command(root), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(load(root).trials) == 6  # a finished study asks for nothing more


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with")
def test_a_trial_killed_right_after_ask_goes_stale_and_is_queued_again(tmp_path):
    storage = HeartbeatStorage(
        f"sqlite:///{tmp_path}/study.db", heartbeat_interval=1, grace_period=1,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
    )  # fmt: skip
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask({"x": FloatDistribution(0.0, 1.0)})  # and then the sweeper dies: no heartbeat thread ever ran
    time.sleep(2.5)  # older than the grace period (a slower machine only makes it older)
    optuna.storages.fail_stale_trials(study)
    states = [trial.state for trial in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.get_trials()[1].params == study.get_trials()[0].params


@pytest.mark.parametrize(
    "option, message",
    [("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0 is invalid"),
     ("hydra.sweeper.grace_period=1", "hydra.sweeper.grace_period=1 is invalid; expected an integer >= 2"),
     ("hydra.sweeper.direction=up", "hydra.sweeper.direction='up' is not known"),
     ("hydra.sweeper.max_failure_rate=2", "hydra.sweeper.max_failure_rate=2 is out of range"),
     ("torchrun", "an Optuna sweep cannot be started by 2 processes (torchrun)"),
     ("+hydra.sweeper.sampler.no_such_option=1",
      "hydra.sweeper.sampler.no_such_option: TPESampler takes no option 'no_such_option'; its options are"),
     ("hydra/sweeper/pruner=no_such", "Could not find 'hydra/sweeper/pruner/no_such'; choose one of: hyperband,"),
     ("hydra.sweeper.objectives=[test_acc]", "test_acc cannot be an objective: choosing trials by it tunes on"),
     ("+hydra.sweeper.search_space={}", "hydra.sweeper.search_space is not an option of the Optuna sweeper; the "
                                        "search space is hydra.sweeper.params")],
)  # fmt: skip
def test_a_bad_sweeper_option_is_one_line_before_any_trial(tmp_path, option, message):
    environment = {**os.environ, "RANK": "0", "WORLD_SIZE": "2"} if option == "torchrun" else None
    result = subprocess.run(sweep_command(tmp_path, *([] if option == "torchrun" else [option])), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=environment)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2 and message in output and "Traceback" not in output, output
    assert [line for line in output.splitlines() if "error" in line] == [line for line in output.splitlines()
                                                                        if message in line]  # one line  # fmt: skip
    assert not (tmp_path / "optuna.db").exists()
