"""The Optuna sweeper as Hydra's and Optuna's users write it: chosen by name alone, any sampler of its group,
several objectives with a Pareto front, and bad trials stopped early through the study's storage."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from rigl_repro.config import compose_config
from rigl_repro.sweeps.optuna_study import OptunaStudySweeperBase

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "hydra" / "sweeper"
QUIET = {**os.environ, "OMP_NUM_THREADS": "1"}


def by_name(root, *extra):
    """The README's ad-hoc sweep, one epoch per run."""
    return [sys.executable, str(ROOT / "main.py"), "-m", "hydra/sweeper=optuna", "dataset=digits",
            "masking.alpha=interval(0.1,0.6)", "hydra.sweeper.n_trials=3", "train.epochs=1", "logger.mode=disabled",
            f"output_root={root}", *extra]  # fmt: skip


def sweep(tmp_path, *extra):
    result = subprocess.run(by_name(tmp_path / "runs", *extra), cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=QUIET)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_the_sweeper_is_chosen_by_name_alone_and_its_study_lives_in_memory(tmp_path):
    output = sweep(tmp_path)
    assert "is kept in memory and ends with this sweep; a stored study resumes a killed sweep" in output
    results = yaml.safe_load((tmp_path / "runs/optuna/sweep-digits-rigl-masking.alpha.yaml").read_text())
    assert results["complete"] == 3 and 0.1 <= results["best_params"]["masking.alpha"] <= 0.6
    assert len(list((tmp_path / "runs").rglob("summary.json"))) == 3
    hydra = compose_config(["hydra/sweeper=optuna"], with_hydra=True).hydra
    assert hydra.runtime.choices["hydra/sweeper"] == "optuna"  # what --info reports
    assert hydra.sweeper._target_ == "hydra_plugins.rigl_repro_sweeper.OptunaStudySweeper"
    assert compose_config(["hydra/sweeper=optuna_study"], with_hydra=True).hydra.sweeper == hydra.sweeper
    assert compose_config([], with_hydra=True).hydra.sweeper._target_.endswith(".GridSweeper")


@pytest.mark.slow  # each as the default one; the sampler is built and used in process by the test below
@pytest.mark.parametrize("choice", ["hydra/sweeper/sampler=random", "hydra/sweeper/sampler=cmaes",
                                    "hydra/sweeper/sampler=nsgaii", "+hydra.sweeper.sampler.multivariate=true"])
def test_every_sampler_runs_the_readme_s_sweep_to_its_end(tmp_path, choice):
    sweep(tmp_path, choice)
    results = yaml.safe_load((tmp_path / "runs/optuna/sweep-digits-rigl-masking.alpha.yaml").read_text())
    assert results["complete"] == 3


def sampler_node(name, **options):
    return {**yaml.safe_load((CONF / "sampler" / f"{name}.yaml").read_text()), **options}


class FakeLauncher:
    """Jobs that 'train' at once: validation accuracy peaks at alpha 0.3; FLOPs grow with the density."""

    def __init__(self):
        self.jobs = []

    def launch(self, job_overrides, initial_job_idx):
        returns = []
        for overrides in job_overrides:
            self.jobs.append(list(overrides))
            values = dict(item.split("=", 1) for item in overrides if not item.startswith("++hydra"))
            alpha, density = float(values["masking.alpha"]), float(values.get("masking.density", 0.1))
            objectives = {"val_acc": 1 - abs(alpha - 0.3) - density / 10, "train_flops": density}
            returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=objectives))
        return returns


def in_process_sweep(tmp_path, arguments, **options):
    sweeper = OptunaStudySweeperBase(**options)
    sweeper.config = OmegaConf.create({
        "trial_seeds": None, "dataset": {"name": "digits"}, "masking": {"name": "rigl"},
        "hydra": {"sweep": {"dir": str(tmp_path)}, "job": {"config": {"override_dirname": {"exclude_keys": []}}}},
    })  # fmt: skip
    sweeper.launcher = FakeLauncher()
    sweeper.sweep(arguments)
    return sweeper


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name, options", [("tpe", {"multivariate": True, "n_startup_trials": 2}), ("random", {}),
                                           ("cmaes", {}), ("qmc", {}), ("gp", {"n_startup_trials": 2}),
                                           ("nsgaii", {})])  # fmt: skip
def test_every_sampler_of_the_group_drives_a_sweep_and_repeats_it_exactly(tmp_path, name, options):
    arguments = ["masking.alpha=interval(0.1,0.6)", "masking.density=choice(0.05,0.1,0.2)"]
    made = [
        in_process_sweep(tmp_path / str(index), arguments, n_trials=5, sampler=sampler_node(name, **options)).launcher
        for index in range(2)
    ]
    assert len(made[0].jobs) == 5
    assert made[0].jobs == made[1].jobs  # seeded: the same proposals again


def test_a_grid_runs_each_combination_once_and_stops(tmp_path):
    sweeper = in_process_sweep(tmp_path, ["masking.alpha=0.2,0.3", "masking.density=choice(0.05,0.1)"], n_trials=9,
                               sampler=sampler_node("grid"))  # fmt: skip
    proposed = {tuple(job[:2]) for job in sweeper.launcher.jobs}
    assert len(sweeper.launcher.jobs) == 4 and len(proposed) == 4


def test_a_custom_search_space_adds_parameters_to_each_trial(tmp_path, monkeypatch):
    def more(cfg, trial):
        trial.suggest_categorical("masking.density", [0.05, 0.2])

    monkeypatch.setattr(sys.modules[__name__], "more_parameters", more, raising=False)
    sweeper = in_process_sweep(tmp_path, ["masking.alpha=interval(0.1,0.6)"], n_trials=3,
                               custom_search_space=f"{__name__}.more_parameters", sampler=sampler_node("random"))
    assert all(any(item.startswith("masking.density=") for item in job) for job in sweeper.launcher.jobs)


def test_several_objectives_default_to_nsga_ii_and_write_a_pareto_front(tmp_path):
    sweeper = in_process_sweep(
        tmp_path, ["masking.alpha=interval(0.1,0.6)", "masking.density=choice(0.05,0.1,0.2)"], n_trials=6,
        objectives=["val_acc", "train_flops"], direction=["maximize", "minimize"], sampler=sampler_node("auto"),
    )  # fmt: skip
    results = yaml.safe_load((tmp_path / "optuna/sweep-digits-rigl-masking.alpha,masking.density.yaml").read_text())
    assert results["complete"] == 6 and results["directions"] == ["maximize", "minimize"]
    assert {"trial", "values", "params"} <= set(results["pareto_front"][0])
    stem = tmp_path / "optuna/sweep-digits-rigl-masking.alpha,masking.density-pareto"
    assert Path(f"{stem}.csv").read_text().startswith("trial,val_acc,train_flops,")
    assert Path(f"{stem}.png").read_bytes().startswith(b"\x89PNG")
    assert sweeper.directions == ["maximize", "minimize"]


def test_a_stored_study_of_two_objectives_holds_both_values_and_resumes_with_nothing_to_do(tmp_path):
    storage = f"sqlite:///{tmp_path}/mo.db"
    command = ["hydra.sweeper.objectives=[val_acc,train_flops]", "hydra.sweeper.direction=[maximize,minimize]",
               "masking.density=choice(0.05,0.2)", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=mo"]
    sweep(tmp_path, *command)
    study = optuna.load_study(study_name="mo", storage=storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and all(len(t.values) == 2 and 0 < t.values[1] < 1 for t in complete)
    assert (tmp_path / "runs/optuna/mo-pareto.csv").exists() and (tmp_path / "runs/optuna/mo-pareto.png").exists()
    again = sweep(tmp_path, *command)
    assert "Launching" not in again and len(optuna.load_study(study_name="mo", storage=storage).trials) == 3


LAUNCHERS = {  # the joblib workers reach the storage from their own processes (SLURM's: make test-slurm)
    "in process": ["hydra.sweeper.n_trials=4"],
    "joblib": ["hydra.sweeper.n_trials=6", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
               "hydra.sweeper.n_jobs=2"],
}


@pytest.mark.parametrize("launcher", ["in process", pytest.param("joblib", marks=pytest.mark.slow)])
def test_a_pruned_sweep_reports_every_epoch_stops_bad_trials_and_never_runs_them_again(tmp_path, launcher):
    storage = f"sqlite:///{tmp_path}/pruned.db"
    command = ["scale=smoke", "train.epochs=4", "hydra/sweeper/pruner=median",
               "hydra.sweeper.pruner.n_startup_trials=1", "train.lr=choice(0.05,0.0005)",
               f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=p", "hydra/sweeper/sampler=random",
               *LAUNCHERS[launcher]]  # fmt: skip
    sweep(tmp_path, *command)
    study = optuna.load_study(study_name="p", storage=storage)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(4 if trial.state == TrialState.COMPLETE else len(steps))) and steps
        named = [f"{key}={value}" for key, value in trial.params.items()]
        run = [path.parent for path in (tmp_path / "runs").rglob("checkpoint.pt")  # by the trial's command line
               if set(named) <= set(yaml.safe_load((path.parent / ".hydra" / "overrides.yaml").read_text()))]
        assert len(run) == 1, trial.params
        pruned = (run[0] / "pruned.json").exists()
        assert pruned == (trial.state == TrialState.PRUNED)
        if pruned:
            assert json.loads((run[0] / "pruned.json").read_text())["epoch"] == len(steps)
            assert not (run[0] / "summary.json").exists()
    again = sweep(tmp_path, *command)
    assert "Launching" not in again
    assert [t.state for t in optuna.load_study(study_name="p", storage=storage).trials] == states


def test_the_official_plugin_s_search_space_syntax_means_the_same_here():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from rigl_repro.sweeps import search_space

    space, fixed = search_space(["a=int(interval(1, 5))", "b=tag(log, int(interval(1, 100)))", "c=1,2,3",
                                 "d=tag(log, interval(0.001, 0.1))", "e=interval(0, 1)", "f=7"])  # fmt: skip
    assert space == {"a": IntDistribution(1, 5), "b": IntDistribution(1, 100, log=True),
                     "c": CategoricalDistribution([1, 2, 3]), "d": FloatDistribution(0.001, 0.1, log=True),
                     "e": FloatDistribution(0.0, 1.0)}  # fmt: skip
    assert fixed == {"f": "7"}


def test_a_custom_search_space_that_names_no_function_is_one_line(tmp_path, caplog):
    with pytest.raises(SystemExit) as stop:
        in_process_sweep(tmp_path, ["masking.alpha=interval(0.1,0.6)"], custom_search_space="no_such_module.suggest")
    assert stop.value.code == 2
    assert "hydra.sweeper.custom_search_space=no_such_module.suggest names no function" in caplog.text
