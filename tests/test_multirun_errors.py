"""A sweep's errors are told like a single run's (issue 25, point 5): a sweep whose jobs cannot compose, or whose
values a single run would refuse, is one line and exit code 2 before any job starts (``check_command_line``); an
experiment's grid given without ``-m`` is refused rather than run as one default run; and a grid whose runs fail
once started says each reason once, with the count (``rigl_repro.sweeps.grid.failure_report``)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from rigl_repro.config import check_command_line, compose_config, composition_part, grid_jobs, run_config_problem

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger.mode=disabled", "threads=1", "train.epochs=1"]


def check(tmp_path, *arguments):
    """``check_command_line`` of a command writing below ``tmp_path``; nothing may be created there."""
    problem = check_command_line([*arguments, *QUIET, f"output_root={tmp_path / 'runs'}"])
    assert list(tmp_path.iterdir()) == []
    return problem


def main_py(tmp_path, *arguments):
    command = [sys.executable, str(ROOT / "main.py"), *arguments, *QUIET, f"output_root={tmp_path / 'runs'}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()


@pytest.mark.parametrize(
    "sweep, message",
    [
        (["dataset=digits", "masking.densty=0.1,0.2"],
         "Could not override 'masking.densty'. It is not an option of this config: check its spelling"),
        (["dataset=digits", "masking=rgl,set"],
         "Could not find 'masking/rgl'; choose one of: dense, lottery, pruning, rigl,"),
        (["dataset=digts", "seed=0,1"], "Could not find 'dataset/digts'; choose one of: cifar10,"),
        (["dataset=digits", "masking.densty=0.1", "seed=0,1"], "Could not override 'masking.densty'"),  # fixed
        (["dataset=digits", "masking=pruning,static", "masking.scope=global,layerwise"],  # static has no scope
         "Could not override 'masking.scope'"),
        (["dataset=digits", "masking.alpha=1.5,0.3", "seed=0,1"], "masking.alpha=1.5 is out of range"),
        (["dataset=digits", "masking.alpha=interval(0.1,0.5)"],
         "masking.alpha=interval(0.1,0.5) is a sweep the grid sweeper cannot run (it samples)"),
    ],
    ids=["swept key", "swept group", "fixed group", "fixed key", "a key one swept group lacks", "bad value",
         "interval"],
)  # fmt: skip
def test_a_grid_that_cannot_run_is_one_line_before_any_job(tmp_path, sweep, message):
    problem = check(tmp_path, "-m", *sweep)
    assert problem is not None and "\n" not in problem and message in problem, problem


@pytest.mark.parametrize(
    "sweep, jobs",
    [
        (["masking.densty=0.1,0.2"], "(all 2 runs)"),
        (["masking=rgl,set"], "(1 of 2 runs: the one with masking=rgl)"),
        (["masking=pruning,static", "masking.scope=global,layerwise"], "(2 of 4 runs: those with masking=static)"),
        (["masking.alpha=1.5,0.3", "seed=0,1"], "(2 of 4 runs)"),  # the message names masking.alpha=1.5 itself
        (["masking.alpha=1.5,0.3", "masking.delta_t=0,100"],  # two problems, each told once with its jobs
         ("(2 of 4 runs); also masking.alpha=1.5 is out of range; expected a value in [0.0, 1.0] (1 of 4 runs: "
          "the one with masking.alpha=1.5 masking.delta_t=100)")),
    ],
)  # fmt: skip
def test_the_line_names_the_jobs_it_refuses(tmp_path, sweep, jobs):
    assert jobs in check(tmp_path, "-m", "dataset=digits", *sweep)


def test_each_job_is_checked_as_its_own_single_run_would_be(tmp_path):
    """The check composes one job per combination of groups and sets the others' values in place: the line
    must still count, for each problem, exactly the jobs a single run of each would refuse with it."""
    sweep = ["dataset=digits", "masking=rigl,small_dense", "masking.density=0.1,1.5,1e-9", "seed=0,-1"]
    problem = check(tmp_path, "-m", *sweep)
    alone: dict[str, int] = {}
    for job in grid_jobs(sweep):
        message = run_config_problem(compose_config([*job, *QUIET], with_hydra=True))
        alone[message] = alone.get(message, 0) + 1
    counted = {message: count for message, count in alone.items() if message is not None}
    assert len(counted) >= 3  # the density's range, a density too small for a model, the seed
    for message, count in list(counted.items())[:3]:  # the line tells three problems, then counts the rest
        assert f"{message} ({count} of 12 runs" in problem, problem


def test_jobs_that_differ_only_in_values_compose_once():
    parser = OverridesParser.create()
    cfg = compose_config(["experiment=sweep_lr", "scale=smoke"], with_hydra=True)
    jobs = grid_jobs([*(f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()), "scale=smoke"])
    kinds = {tuple(composition_part(item) for item in parser.parse_overrides(job)) for job in jobs}
    assert (len(jobs), len(kinds)) == (192, 8)  # variant x rigl_hparams; train.lr, density and seed are values
    assert composition_part(parser.parse_override("+masking.extra=1")) == "+masking.extra=1"


@pytest.mark.parametrize("grid", [["experiment=table2", "scale=smoke"], ["experiment=demo", "seed=0,1"]])
def test_the_shipped_grids_pass(tmp_path, grid):
    assert check(tmp_path, "-m", *grid) is None


@pytest.mark.parametrize(
    "search, message",
    [
        (["masking.alpah=interval(0.1,0.5)"], "Could not override 'masking.alpah'"),
        (["variant=choice(rigl,rigl_er)"],
         "Could not find 'variant/rigl_er'; choose one of: dense,"),
    ],
)  # fmt: skip
def test_an_optuna_study_whose_trials_cannot_compose_is_one_line(tmp_path, search, message):
    problem = check(tmp_path, "-m", "experiment=sweep_alpha_dt", "scale=smoke", "masking.density=0.2", *search)
    assert problem is not None and "\n" not in problem and message in problem, problem


def test_an_optuna_study_that_composes_passes(tmp_path):
    study = ["experiment=sweep_alpha_dt", "scale=smoke", "masking.density=0.2", "variant=choice(rigl,rigl_erk)"]
    assert check(tmp_path, "-m", *study) is None
    assert check(tmp_path, "-m", "hydra/sweeper=optuna", "dataset=digits", "masking.alpha=interval(0.1,0.6)") is None


def test_an_experiment_s_grid_without_m_is_refused_with_the_command_that_runs_it(tmp_path):
    problem = check(tmp_path, "experiment=demo", "masking.density=0.1")
    command = shlex.join(["python", "main.py", "-m", "experiment=demo", "masking.density=0.1", *QUIET,
                          f"output_root={tmp_path / 'runs'}"])  # fmt: skip
    assert problem == f"experiment=demo defines a grid of 5 runs (hydra.sweeper.params); add -m to run it: {command}"
    suggested = shlex.split(problem.split("add -m to run it: ")[1])
    assert suggested[:3] == ["python", "main.py", "-m"] and check_command_line(suggested[2:]) is None
    assert "defines a grid of 56 runs" in check(tmp_path, "experiment=table2", "scale=smoke")
    assert "defines an Optuna study of 3 trials" in check(tmp_path, "experiment=sweep_alpha_dt", "scale=smoke")


def test_a_single_run_that_sets_every_parameter_of_its_experiment_s_grid_is_that_run(tmp_path):
    assert check(tmp_path, "experiment=fmnist_dense", "seed=0") is not None  # variant and density: the grid's
    assert check(tmp_path, "experiment=fmnist_dense", "variant=dense", "masking.density=1.0", "seed=0") is None


def test_a_sweep_without_m_is_one_line_saying_what_each_reading_needs(tmp_path):
    problem = check(tmp_path, "dataset=digits", "seed=0,1")
    assert problem.startswith("seed=0,1 is a sweep, which needs -m to run each value: python main.py -m dataset=")
    assert problem.endswith("for one run with a list write seed=[0,1], with text quote it: seed=\"'0,1'\"")


def test_every_documented_experiment_command_uses_m():
    """Every shipped experiment defines a grid (or a study), which a command without -m is refused."""
    texts = {path: path.read_text() for path in [ROOT / "README.md", ROOT / "Makefile", *(ROOT / "docs").glob("*.md")]}
    run = re.search(r"^RUN = (.*)$", texts[ROOT / "Makefile"], re.MULTILINE)
    assert run and " -m " in f"{run.group(1)} "
    for path, text in texts.items():
        for command in re.findall(r"main\.py[^`\n;|]*experiment=", text):
            assert re.search(r"main\.py -m\b", command), f"{path.name}: {command}"
    for experiment in sorted(path.stem for path in (ROOT / "conf" / "experiment").glob("*.yaml")):
        assert compose_config([f"experiment={experiment}"], with_hydra=True).hydra.sweeper.params, experiment


def test_main_py_refuses_a_grid_that_cannot_run_in_one_line_and_creates_nothing(tmp_path):
    code, output = main_py(tmp_path, "-m", "dataset=digits", "masking=rgl,set")
    assert code == 2 and len(output) == 1, output
    assert output[0].startswith("error: In 'config': Could not find 'masking/rgl'"), output
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def missing_data_grid(tmp_path_factory):
    """A grid of 2 runs whose dataset is missing: each is refused once it loads its data."""
    tmp_path = tmp_path_factory.mktemp("missing")
    return main_py(tmp_path, "-m", "dataset=fashion_mnist", f"dataset.root={tmp_path}/nowhere",
                   "dataset.system_root=null", "dataset.download=false", "masking=static,set")  # fmt: skip


def test_a_grid_whose_runs_fail_for_one_reason_says_it_once_with_the_count(missing_data_grid):
    code, output = missing_data_grid
    assert code == 2 and not any("Traceback" in line for line in output), output
    (summary,) = [line for line in output if "runs failed" in line]
    assert re.search(r"error: 2 of 2 runs failed: Fashion-MNIST is not in \S+/nowhere/FashionMNIST/raw", summary)
    told = [line for line in output if "Fashion-MNIST is not in" in line]
    assert len(told) in (1, 3), told  # 3: each job's own line too, until main.py keeps it off the console


def test_a_grid_whose_runs_fail_for_one_reason_prints_it_once(missing_data_grid):
    _, output = missing_data_grid
    assert len([line for line in output if "Fashion-MNIST is not in" in line]) == 1, output
