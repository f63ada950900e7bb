"""Declared shapes are checked against the data, and settings that make a run degenerate are refused (or warned
about) in one line naming the option, before anything is read or written (issue 23, family 5).

Every case goes through the one function that owns its family: ``plan_run`` (``rigl_repro.run.checks``' rules),
``RunConfig.from_hydra`` (the option checks) or ``load_splits`` (the declared shape, for every source).
"""

import itertools
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import rigl_repro.data.registry as registry
from rigl_repro.config import CONF_DIR
from rigl_repro.config import compose_config as compose_project_config
from rigl_repro.data import available_sources, load_splits
from rigl_repro.errors import ConfigError
from rigl_repro.run.build import build_run, plan_run
from rigl_repro.run.checks import REFUSED, WARNED
from rigl_repro.run.config import RunConfig
from rigl_repro.training.processes import SingleProcess
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
DATASETS = sorted(path.stem for path in (CONF_DIR / "dataset").glob("*.yaml"))

# (overrides on the digits, what the one line says): each refused by a rule of rigl_repro.run.checks.REFUSED.
REFUSED_CASES = {
    "validation_beyond_data": (["dataset.val_size=5000"], r"dataset.val_size=5000 must be in [0, 1496]"),
    "batch_larger_than_data": (["train.batch_size=100000"],
                               "train.batch_size=100000 is larger than the 1247 training images"),
    "epochs_under_one": (["train.length_multiplier=1e-9"],
                         "train.length_multiplier=1e-09 scales train.epochs=30 to 3e-08 epochs, which rounds to 0"),
    "decay_interval_under_one_step": (["train.lr_decay_every=1", "train.length_multiplier=0.4"],
                                      "train.lr_decay_every=1 x train.length_multiplier=0.4 rounds to 0 steps"),
    "warmup_not_shorter_than_run": (["train.warmup_steps=600"],
                                    "train.warmup_steps=600 (whole epochs: 600 steps) is not shorter than the run's "
                                    "600 steps"),
    "fewer_weights_than_classes": (["masking.density=1e-9"],
                                   "masking.density=1e-09 leaves 9.37e-05 of the model's 93,728 weights, fewer than "
                                   "its 10 classes"),
    "width_under_one_channel": (["masking=small_dense", "masking.density=5e-4"],
                                "masking.density=0.0005 narrows the model to width 0.0224, under one channel in "
                                "features.0.weight"),
}  # fmt: skip
# More settings of the same rules, through other methods, recipes and models.
MORE_REFUSED = [
    (["masking=small_dense", "masking.density=1e-9"], "masking.density=1e-09 leaves 9.37e-05 of the model's"),
    (["masking=static", "masking.distribution=erk", "masking.density=1e-6"], "masking.density=1e-06 leaves 0.0937"),
    (["dataset=cifar10", "masking=small_dense", "masking.density=1e-3"],  # WRN-22-2's 16-channel stem: 0.5 channel
     "masking.density=0.001 narrows the model to width 0.0316, under one channel in conv1.weight (16 x 0.0316)"),
    (["dataset=cifar10", "variant=pruning", "train.epochs=5"],  # its 3,500-step warm-up in 1,760 steps
     "train.warmup_steps=3500 (whole epochs: 3520 steps) is not shorter than the run's 1760 steps"),
    (["dataset=cifar100", "train.length_multiplier=0.001"], "train.length_multiplier=0.001 scales train.epochs=250"),
    (["masking=pruning", "masking.delta_t=100000"],  # pruning refuses its own run without a pruning step
     "masking.delta_t=100000 is longer than the pruning window"),
]
# Dynamic methods left without any topology update by masking.delta_t: they train, with one warning.
WARNED_CASES = [
    (["masking.delta_t=100000"], "masking.delta_t=100000 leaves rigl no topology update in this run's 600 steps"),
    (["masking.delta_t=100000000000000000000"], "masking.delta_t=100000000000000000000 leaves rigl no topology"),
    (["masking=set", "train.epochs=1"], "masking.delta_t=100 leaves set no topology update in this run's 20 steps"),
    (["masking=snfs", "masking.delta_t=5000"], "masking.delta_t=5000 leaves snfs no topology update"),
    (["variant=rigl_sm", "masking.update_timing=google", "masking.delta_t=450"], "masking.delta_t=450 leaves rigl"),
]
# Option values that cannot describe a run, refused by RunConfig.from_hydra.
CONFIG_CASES = [
    (["dataset.std=[0]"], "dataset.std=[0] is invalid; expected a positive, finite number per channel"),
    (["dataset.std=[-0.2]"], "dataset.std=[-0.2] is invalid"),
    (["dataset.std=[inf]"], "dataset.std=[inf] is invalid"),
    (["dataset.std=[abc]"], "dataset.std=['abc'] is invalid"),
    (["dataset.mean=[nan]"], "dataset.mean=[nan] is invalid; expected a finite number per channel"),
    (["logger.mode=offline", "logger.entity=a/b"], "logger.entity='a/b' is invalid"),
]


def case_id(value):
    """A case's overrides as its test id (its message stays out of it)."""
    return " ".join(value) if isinstance(value, list) else "-"


def planned(*overrides):
    return plan_run(RunConfig.from_hydra(compose_config(*overrides)))


def test_every_refusing_rule_has_a_case():
    assert sorted(rule.__name__ for rule in REFUSED) == sorted(REFUSED_CASES)
    assert [rule.__name__ for rule in WARNED] == ["no_topology_update"]


@pytest.mark.parametrize("overrides, message", [*REFUSED_CASES.values(), *MORE_REFUSED], ids=case_id)
def test_a_degenerate_setting_is_refused_in_one_line_when_planned(overrides, message):
    with pytest.raises(ConfigError) as refused:
        planned(*overrides)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("overrides, message", WARNED_CASES, ids=case_id)
def test_a_dynamic_method_without_any_update_is_warned_about_in_one_line(overrides, message):
    (warning,) = planned(*overrides).warnings
    assert message in warning and "\n" not in warning


def test_the_warning_is_logged_once_the_run_is_built(caplog):
    config = RunConfig.from_hydra(compose_config("masking.delta_t=1000", "train.epochs=1", "device=cpu"))
    with caplog.at_level(logging.WARNING, logger="rigl_repro.run.build"):
        build_run(config, SingleProcess())
    assert [record.getMessage() for record in caplog.records] == [
        "masking.delta_t=1000 leaves rigl no topology update in this run's 20 steps: its masks would stay as they "
        "start; lower masking.delta_t or train longer"
    ]


@pytest.mark.parametrize("overrides, message", CONFIG_CASES, ids=case_id)
def test_an_option_that_cannot_describe_a_run_is_refused_with_the_config(overrides, message):
    with pytest.raises(ConfigError) as refused:
        RunConfig.from_hydra(compose_config(*overrides))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def dataset_options(name, **changes):
    options = OmegaConf.to_container(compose_project_config([f"dataset={name}"]).dataset, resolve=True)
    return {**options, **changes}


def test_every_source_has_a_shipped_dataset_config():
    assert sorted({dataset_options(name)["source"] for name in DATASETS}) == list(available_sources())


@pytest.mark.parametrize("change", ["image_size", "channels", "not_square"])
@pytest.mark.parametrize("name", DATASETS)
def test_every_source_s_images_are_checked_against_the_declared_shape(monkeypatch, name, change):
    """Each shipped dataset's source, its loader made to return images of another shape than declared."""
    options = dataset_options(name)
    channels, size = options["channels"], options["image_size"]
    shape = {"image_size": (channels, size + 1, size + 1), "channels": (channels + 1, size, size),
             "not_square": (channels, size, size + 1)}[change]  # fmt: skip
    source = registry.get_source(options["source"])

    def load(cfg):
        images = torch.zeros(4, *shape, dtype=torch.uint8)
        return images, torch.zeros(4, dtype=torch.long), images, torch.zeros(4, dtype=torch.long)

    monkeypatch.setitem(registry.REGISTRY, source.name, registry.Source(source.name, load, source.location_options,
                                                                        source.validate))  # fmt: skip
    expected = {
        "image_size": f"dataset.image_size={size} but {source.name}'s images are {size + 1}x{size + 1}; set "
                      f"dataset.image_size={size + 1}",
        "channels": f"dataset.channels={channels} but {source.name}'s images have {channels + 1} channel(s); set "
                    f"dataset.channels={channels + 1}",
        "not_square": f"dataset.image_size={size} but {source.name}'s images are {size}x{size + 1}; the models here "
                      "take square images",
    }[change]  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        load_splits(options, CPU)
    assert str(refused.value).startswith(expected)


@pytest.mark.parametrize("overrides, message", [
    ({"image_size": 9}, "dataset.image_size=9 but digits's images are 8x8; set dataset.image_size=8"),
    ({"channels": 3, "mean": [0.3] * 3, "std": [0.4] * 3}, "dataset.channels=3 but digits's images have 1 channel(s)"),
])  # fmt: skip
def test_the_digits_themselves_are_checked_against_the_declared_shape(overrides, message):
    with pytest.raises(ConfigError) as refused:
        load_splits(dataset_options("digits", **overrides), CPU)
    assert str(refused.value).startswith(message)


def test_main_refuses_a_declared_shape_in_one_line_and_writes_no_weights(tmp_path):
    command = [sys.executable, str(ROOT / "main.py"), "dataset=digits", "logger.mode=disabled",
               f"output_root={tmp_path / 'runs'}", "dataset.image_size=9"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, output
    assert len(output) == 1 and "error: dataset.image_size=9 but digits's images are 8x8" in output[0], output
    assert not (tmp_path / "runs" / "digits-small_cnn-rigl").exists()  # the refused run left no folder behind


def experiment_plan(experiment, scale, *point):
    """The plan of one run of an experiment, as its grid composes it (the experiment's own dataset)."""
    overrides = [f"experiment={experiment}", f"scale={scale}", "logger.mode=disabled", *point]
    return plan_run(RunConfig.from_hydra(compose_project_config(overrides)))


def test_the_default_config_passes_the_checks():
    plan = plan_run(RunConfig.from_hydra(compose_project_config([])))
    assert plan.warnings == [] and plan.total_steps == 250 * 352


@pytest.mark.parametrize("scale", ["smoke", "paper"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_shipped_experiment_passes_the_checks(experiment, scale):
    assert experiment_plan(experiment, scale).warnings == []


def grid_points(experiment, scale):
    """Every run of the experiment's grid, less its seeds (no rule reads the seed); a study's continuous
    interval by its two ends."""
    cfg = compose_project_config([f"experiment={experiment}", f"scale={scale}"], with_hydra=True)
    parser, axes = OverridesParser.create(), []
    for key, value in OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True).items():
        override = parser.parse_override(f"{key}={value}")
        if key == "seed" or not override.is_sweep_override():
            continue
        sweep = override.value()
        values = override.sweep_string_iterator() if override.is_discrete_sweep() else (sweep.start, sweep.end)
        axes.append([f"{key}={value}" for value in values])
    return list(itertools.product(*axes))


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["smoke", "paper"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_run_of_every_shipped_grid_passes_the_checks(experiment, scale):
    """No run of any grid is refused. At paper scale none is warned about either; at smoke scale, Figure 2's
    grid and the (alpha, delta_t) study keep the paper's delta_t in 80-step runs, whose masks never change."""
    warned = []
    for point in grid_points(experiment, scale):
        warned += experiment_plan(experiment, scale, *point).warnings
    assert scale == "smoke" or warned == []
