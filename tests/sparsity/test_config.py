"""Bad masking options fail before training with one message that names the option and what it accepts."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity import SparseEngine, available_methods, build_method
from tests.helpers import make_run

CONF = Path(__file__).resolve().parents[2] / "conf" / "masking"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("density", 0.0, r"masking.density=0.0 is out of range; expected a value in \(0.0, 1.0\]"),
        ("density", 1.5, r"masking.density=1.5 is out of range"),
        ("density", -0.1, r"masking.density=-0.1 is out of range"),
        ("density", float("nan"), r"masking.density=nan is out of range"),
        ("density", "dense", r"masking.density='dense' is not a number"),
        ("alpha", -0.1, r"masking.alpha=-0.1 is out of range; expected a value in \[0.0, 1.0\]"),
        ("alpha", 1.5, r"masking.alpha=1.5 is out of range"),
        ("delta_t", 0, r"masking.delta_t=0 is invalid; expected an integer >= 1"),
        ("delta_t", 2.5, r"masking.delta_t=2.5 is invalid"),
        ("delta_t", True, r"masking.delta_t=True is invalid"),
        ("t_end_fraction", 0.0, r"masking.t_end_fraction=0.0 is out of range; expected a value in \(0.0, 1.0\]"),
        ("t_end_fraction", 1.2, r"masking.t_end_fraction=1.2 is out of range"),
        ("distribution", "random", r"masking.distribution='random' is not known; choose one of: uniform, er, erk"),
        ("redistribution", "sg", r"masking.redistribution='sg' is not known; choose one of: none, grad, momentum"),
        ("erk_power_scale", 0, r"masking.erk_power_scale=0 is out of range"),
        ("update_timing", "late", r"masking.update_timing='late' is not known; choose one of: report_code, google"),
        ("drop_rounding", "round", r"masking.drop_rounding='round' is not known; choose one of: ceil, floor"),
        ("regrown", "reset", r"masking.regrown='reset' is not known; choose one of: zero, keep"),
        ("adjust_prune_rate", "yes", r"masking.adjust_prune_rate='yes' is invalid; expected true or false"),
        ("redistribution_rule", "x", r"masking.redistribution_rule='x' is not known; choose one of: capped, prop"),
    ],
)
def test_out_of_range_options_name_the_option_and_allowed_values(option, value, message):
    with pytest.raises(ConfigError, match=message):
        build_method({"name": "rigl", option: value})


def test_unknown_method_lists_the_methods():
    with pytest.raises(ConfigError, match=r"masking.name='rigl2' is not a known method; choose one of: dense, "):
        build_method({"name": "rigl2"})


def test_unknown_option_lists_the_method_options():
    with pytest.raises(ConfigError, match=r"masking.start_fraction is not an option of method 'rigl'"):
        build_method({"name": "rigl", "start_fraction": 0.1})


def test_method_specific_options_are_checked():
    with pytest.raises(ConfigError, match="masking.momentum_coefficient=1.0 is out of range"):
        build_method({"name": "snfs", "momentum_coefficient": 1.0})
    with pytest.raises(ConfigError, match="masking.scope='local' is not known"):
        build_method({"name": "pruning", "scope": "local"})
    with pytest.raises(ConfigError, match="masking.growth_momentum='adam' is not known"):
        build_method({"name": "snfs", "growth_momentum": "adam"})
    with pytest.raises(ConfigError, match="masking.width_rule='exact' is not known; choose one of: sqrt, weight_count"):
        build_method({"name": "small_dense", "width_rule": "exact"})
    with pytest.raises(ConfigError, match="masking.end_fraction=0.1 must be greater than masking.start_fraction=0.5"):
        build_method({"name": "pruning", "start_fraction": 0.5, "end_fraction": 0.1})


def test_custom_map_naming_a_missing_layer_fails_at_engine_construction():
    with pytest.raises(ConfigError, match="names layers the model lacks: nope.weight"):
        make_run({"name": "static", "distribution": "custom", "custom_densities": {"nope.weight": 0.5}})


def test_total_steps_must_be_positive():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for bad in (0, 0.5, float("nan"), True, "100"):
        with pytest.raises(ConfigError, match="total training steps must be a number >= 1"):
            SparseEngine(model, opt, build_method({"name": "rigl"}), total_steps=bad)


def test_every_method_has_a_config_and_every_config_builds():
    configs = {path.stem: OmegaConf.to_container(OmegaConf.load(path)) for path in sorted(CONF.glob("*.yaml"))}
    assert set(available_methods()) <= set(configs)
    for stem, config in configs.items():
        method = build_method(config)
        assert set(config) - {"name"} == set(method.option_names()), stem
    assert configs["rigl_sg"]["redistribution"] == "grad" and configs["rigl_sm"]["redistribution"] == "momentum"
