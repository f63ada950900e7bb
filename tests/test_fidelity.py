"""The report code's recipe as the composed configs give it (docs/fidelity.md), and every option that page
names exists."""

import math
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rigl_repro import config as project_config
from rigl_repro.models import build_model
from rigl_repro.run.recipe import Recipe, learning_rate_factor
from rigl_repro.sparsity import build_method
from rigl_repro.sparsity.schedules import schedule_length
from tests.helpers import compose_config

FIDELITY_PAGE = Path(__file__).resolve().parents[1] / "docs" / "fidelity.md"


def planned(cfg):
    """The method of a composed config with its schedule fixed for the configured run."""
    dataset, recipe = cfg.dataset, Recipe.from_config(OmegaConf.to_container(cfg.train, resolve=True))
    method = build_method(OmegaConf.to_container(cfg.masking, resolve=True))
    train_size = int(dataset.train_pool) - int(dataset.val_size)
    method.plan(schedule_length(recipe.total_epochs, train_size, recipe.batch_size))
    return method


def test_cifar10_recipe_is_the_report_codes():
    cfg = compose_config("dataset=cifar10")
    assert cfg.model.name == "wrn22_2" and cfg.model.dropout == 0.3
    train = cfg.train
    assert (train.epochs, train.batch_size, train.lr, train.momentum, train.nesterov) == (250, 128, 0.1, 0.9, True)
    assert (train.weight_decay, train.decay_norm_and_bias, train.label_smoothing) == (5e-4, False, 0.0)
    assert (train.lr_decay_every, train.lr_decay_factor, train.warmup_steps) == (30_000, 0.2, 0)
    assert train.pruning_warmup_steps == 3500
    data = cfg.dataset
    assert data.augment == "reflect_crop_flip" and list(data.std) == [0.2023, 0.1994, 0.2010]
    assert list(data.mean) == [0.4914, 0.4822, 0.4465]
    assert (data.val_size, data.val_split) == (5000, "last")
    # Speed options, on for CUDA only; off is the report's fp32 eager training (fidelity row 18).
    assert (train.amp, train.channels_last, train.compile) == ("auto", "auto", "auto")


@pytest.mark.parametrize("variant, distribution", [("static", "uniform"), ("static_erk", "erk")])
def test_static_rows_are_random_and_erk_as_the_tables_label_them(variant, distribution):
    masking = compose_config("dataset=cifar10", f"variant={variant}").masking
    assert (masking.name, masking.distribution) == ("static", distribution)


def test_cifar100_recipe_is_the_report_codes():
    cfg = compose_config("dataset=cifar100")
    assert cfg.model.name == "resnet50" and cfg.model.stem == "single"
    train = cfg.train
    assert (train.weight_decay, train.label_smoothing, train.lr_decay_every) == (1e-4, 0.1, 20_000)
    assert train.warmup_steps == 1760 and train.pruning_warmup_steps == 1760
    assert cfg.dataset.augment == "resized_crop_flip"
    assert (cfg.dataset.val_size, cfg.dataset.val_split) == (5000, "last")
    recipe = Recipe.from_config(OmegaConf.to_container(train, resolve=True))
    steps_per_epoch = math.ceil(45_000 / recipe.batch_size)

    def factor(step):
        return learning_rate_factor(step, recipe.warmup_steps, steps_per_epoch, recipe.decay_interval(), 0.2)

    assert [factor(s) for s in (0, 1759, 1760, 21_759)] == [0.0, 1759 / 1760, 1.0, 1.0]
    assert factor(21_760) == pytest.approx(0.2) and factor(61_760) == pytest.approx(0.008)


@pytest.mark.parametrize("dataset, warmup", [("cifar10", 3500), ("cifar100", 1760)])
def test_the_pruning_rows_warm_up_and_prune_from_step_700_to_65918(dataset, warmup):
    cfg = compose_config(f"dataset={dataset}", "variant=pruning")
    assert cfg.train.warmup_steps == warmup
    method = planned(cfg)
    assert (method.start, method.end, method.scope, method.drop_rounding) == (700, 65_918, "global", "ceil")
    lottery = compose_config(f"dataset={dataset}", "variant=lottery")
    assert lottery.train.warmup_steps == compose_config(f"dataset={dataset}").train.warmup_steps
    assert lottery.masking.trained_weights.endswith("variant=pruning/checkpoint.pt")


@pytest.mark.parametrize(
    "variant, t_end", [("rigl", 65_918), ("rigl_erk", 65_918), ("rigl_2x", 131_836), ("rigl_3x", 197_754)]
)
def test_t_end_is_the_report_codes_end_when(variant, t_end):
    method = planned(compose_config("dataset=cifar10", f"variant={variant}"))
    assert method.t_end == t_end
    updates = [step for step in range(t_end + 200) if method.is_update_step(step)]
    assert updates[0] == 99 and updates[-1] == t_end - t_end % 100 - 1


@pytest.mark.parametrize(
    "variant, regrown, redistribution",
    [("rigl", "zero", "none"), ("set", "zero", "none"), ("snfs", "keep", "momentum"), ("rigl_sg", "zero", "grad"),
     ("rigl_sm", "zero", "momentum")],
)  # fmt: skip
def test_drop_and_grow_defaults_are_the_report_codes(variant, regrown, redistribution):
    masking = compose_config("dataset=cifar10", f"variant={variant}").masking
    assert (masking.alpha, masking.delta_t, masking.t_end_fraction) == (0.3, 100, 0.75)
    assert (masking.update_timing, masking.drop_rounding, masking.adjust_prune_rate) == ("report_code", "ceil", True)
    assert (masking.regrown, masking.redistribution, masking.redistribution_rule) == (regrown, redistribution, "capped")
    if variant == "snfs":
        assert masking.growth_momentum == "optimizer"
        assert build_method(OmegaConf.to_container(masking)).dense_optimizer_state()


def test_small_dense_narrows_every_channel_by_sqrt_density():
    cfg = compose_config("dataset=cifar10", "variant=small_dense", "masking.density=0.1")
    method = build_method(OmegaConf.to_container(cfg.masking))
    model = build_model(OmegaConf.to_container(cfg.model), 10, method.width_multiplier(lambda width: 0))
    assert (model.conv1.out_channels, model.fc.in_features) == (5, 40)


@pytest.mark.parametrize("variant, source", [("rigl_reinit", "rigl_sm"), ("rigl_reinit_erk", "rigl_sm_erk")])
def test_re_initialised_rows_start_from_the_source_runs_masks(variant, source):
    masking = compose_config("dataset=cifar10", f"variant={variant}").masking
    assert masking.initial_mask.endswith(f"variant={source}/checkpoint.pt")
    assert masking.custom_densities.endswith(f"variant={source}/summary.json")


def sweep_config():
    return project_config.compose_config(["experiment=sweep_alpha_dt", "logger.mode=disabled"], with_hydra=True)


def test_the_optuna_sampler_seed_is_the_report_codes():
    assert sweep_config().hydra.sweeper.sampler.seed == 123


def options_named_on_the_fidelity_page() -> set[str]:
    options = set()
    for line in FIDELITY_PAGE.read_text().splitlines():
        if re.match(r"\| \d+ \|", line):
            last_cell = line.rstrip(" |").rsplit("|", 1)[1]
            options.update(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", last_cell))
    return options


def test_every_option_on_the_fidelity_page_exists():
    options = options_named_on_the_fidelity_page()
    assert len(options) > 25
    configs = [
        compose_config(f"dataset={dataset}", f"masking={masking}")
        for dataset in ("cifar10", "cifar100")
        for masking in ("rigl", "snfs", "pruning", "small_dense", "lottery", "srigl")
    ]
    hydra_config = sweep_config()
    for option in sorted(options):
        sources = [hydra_config] if option.startswith("hydra.") else configs
        assert any(OmegaConf.select(cfg, option, default="<missing>") != "<missing>" for cfg in sources), option


def test_every_row_of_the_fidelity_page_has_all_its_columns():
    rows = [line for line in FIDELITY_PAGE.read_text().splitlines() if re.match(r"\| \d+ \|", line)]
    numbers = [int(line.split("|")[1]) for line in rows]
    assert numbers == list(range(1, len(rows) + 1))
    assert all(line.count(" | ") >= 6 for line in rows)
