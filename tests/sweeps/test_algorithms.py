"""Optuna's samplers and pruners from their config groups: every option passed through and honoured, an option
a class does not take refused in one line naming it, the seed advanced per proposal (kept for QMC)."""

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rigl_repro.errors import ConfigError
from rigl_repro.sweeps.algorithms import (
    build_pruner,
    build_sampler,
    check_sampler,
    directions_of,
    grid_of,
    grid_size,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "hydra" / "sweeper"
SPACE = {"masking.alpha": FloatDistribution(0.1, 0.6), "masking.delta_t": IntDistribution(50, 200, step=50)}


def node(group, name, **extra):
    return {**yaml.safe_load((CONF / group / f"{name}.yaml").read_text()), **extra}


@pytest.mark.parametrize(
    "name, cls",
    [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
     ("cmaes", optuna.samplers.CmaEsSampler), ("qmc", optuna.samplers.QMCSampler),
     ("gp", optuna.samplers.GPSampler), ("nsgaii", optuna.samplers.NSGAIISampler)],
)  # fmt: skip
def test_every_sampler_of_the_group_is_optuna_s_own_class(name, cls):
    assert type(build_sampler(node("sampler", name), 1, SPACE, proposals_made=0)) is cls


def test_auto_is_tpe_for_one_objective_and_nsga_ii_for_several():
    assert isinstance(build_sampler(node("sampler", "auto"), 1, SPACE, 0), optuna.samplers.TPESampler)
    assert isinstance(build_sampler(node("sampler", "auto"), 2, SPACE, 0), optuna.samplers.NSGAIISampler)


def test_options_are_passed_through_and_honoured():
    tpe = build_sampler(node("sampler", "tpe", multivariate=True, n_startup_trials=3), 1, SPACE, 0)
    assert tpe._multivariate is True and tpe._n_startup_trials == 3
    cmaes = build_sampler(node("sampler", "cmaes", popsize=6), 1, SPACE, 0)
    assert cmaes._popsize == 6
    median = build_pruner(node("pruner", "median", n_warmup_steps=2))
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_warmup_steps == 2


def test_an_object_option_is_built_from_its_own_target():
    sampler = build_sampler(
        node("sampler", "cmaes", independent_sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 1}),
        1, SPACE, 0,
    )  # fmt: skip
    assert isinstance(sampler._independent_sampler, optuna.samplers.RandomSampler)


@pytest.mark.parametrize("group, name, option", [("sampler", "tpe", "no_such_option"), ("sampler", "random",
                         "multivariate"), ("pruner", "median", "percentile")])  # fmt: skip
def test_an_option_the_class_does_not_take_is_refused_naming_it(group, name, option):
    build = build_pruner if group == "pruner" else lambda n: build_sampler(n, 1, SPACE, 0)
    with pytest.raises(ConfigError, match=f"hydra.sweeper.{group}.{option}: .* takes no option '{option}'") as error:
        build(node(group, name, **{option: 1}))
    assert "\n" not in str(error.value)


def test_a_value_the_class_refuses_is_one_line():
    with pytest.raises(ConfigError, match="PercentilePruner refuses its options"):
        build_pruner(node("pruner", "percentile", percentile=250.0))
    with pytest.raises(ConfigError, match="names no class"):
        build_sampler({"_target_": "optuna.samplers.NoSuchSampler"}, 1, SPACE, 0)
    with pytest.raises(ConfigError, match="not an Optuna BaseSampler"):
        build_sampler({"_target_": "optuna.pruners.MedianPruner"}, 1, SPACE, 0)
    with pytest.raises(ConfigError, match="pruner=none takes no options"):
        build_pruner({"_target_": None, "n_warmup_steps": 3})
    with pytest.raises(ConfigError, match="hydra.sweeper.sampler.seed"):
        check_sampler(node("sampler", "tpe", seed=-1), 1, SPACE)


def proposals(sampler_node, count):
    """The parameters ``count`` proposals make, each with a sampler built afresh as the sweeper builds it."""
    study = optuna.create_study()
    made = []
    for index in range(count):
        study.sampler = build_sampler(sampler_node, 1, SPACE, proposals_made=index)
        trial = study.ask(SPACE)
        study.tell(trial, trial.params["masking.alpha"])
        made.append(trial.params)
    return made


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "qmc", "gp"])
def test_a_seeded_sampler_proposes_the_same_points_again(name):
    sampler = node("sampler", name, **({"n_startup_trials": 2} if name in ("tpe", "gp") else {}))
    assert proposals(sampler, 4) == proposals(sampler, 4)


def test_the_seed_advances_per_proposal_except_for_qmc_whose_seed_scrambles_its_sequence():
    assert build_sampler(node("sampler", "random"), 1, SPACE, proposals_made=5)._rng.rng.randint(10**9) == \
        optuna.samplers.RandomSampler(seed=128)._rng.rng.randint(10**9)  # fmt: skip
    assert build_sampler(node("sampler", "qmc"), 1, SPACE, proposals_made=5)._seed == 123
    first = proposals(node("sampler", "qmc"), 4)
    assert len({(p["masking.alpha"], p["masking.delta_t"]) for p in first}) == 4  # the sequence moves on


def test_the_grid_is_the_sweep_s_finite_values():
    space = {"masking.delta_t": IntDistribution(50, 200, step=50), "variant": CategoricalDistribution(["a", "b"]),
             "train.lr": FloatDistribution(0.1, 0.3, step=0.1)}  # fmt: skip
    assert grid_of(space) == {"masking.delta_t": [50, 100, 150, 200], "variant": ["a", "b"],
                              "train.lr": [0.1, 0.2, 0.3]}  # fmt: skip
    assert grid_size(node("sampler", "grid"), 1, space) == 24
    assert grid_size(node("sampler", "tpe"), 1, space) is None
    with pytest.raises(ConfigError, match="masking.alpha: hydra/sweeper/sampler=grid needs a finite set of values"):
        build_sampler(node("sampler", "grid"), 1, SPACE, 0)
    with pytest.raises(ConfigError, match="the grid is the sweep's params"):
        build_sampler(node("sampler", "grid", search_space={"a": [1]}), 1, space, 0)


def test_one_direction_per_objective():
    assert directions_of("maximize", 1) == ["maximize"]
    assert directions_of(["maximize", "minimize"], 2) == ["maximize", "minimize"]
    with pytest.raises(ConfigError, match="gives 1 direction"):
        directions_of("maximize", 2)
    with pytest.raises(ConfigError, match="hydra.sweeper.direction='maximise' is not known"):
        directions_of(["maximise"], 1)
