"""Bad masking options fail before training with one message that names the option and what it accepts."""

import pytest
import torch
from omegaconf import OmegaConf

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity import SparseEngine, available_methods, build_method
from rigl_repro.sparsity.methods import canonical_masking
from rigl_repro.sparsity.structure import STRUCTURE_OPTIONS
from tests.helpers import compose_config, make_run
from tests.sparsity.test_engine import CONFIGS

# The nine keys every conf/masking file repeated before each method took only its own options, with their
# values then, and each file's own keys: the layout of the masking node in older summaries and checkpoints.
OLD_SHARED = {
    "density": 0.1, "distribution": "uniform", "erk_power_scale": 1.0, "custom_densities": None, "alpha": 0.3,
    "delta_t": 100, "t_end_fraction": 0.75, "redistribution": "none", "update_timing": "report_code",
    "drop_rounding": "ceil",
}  # fmt: skip
OLD_DROP_AND_GROW = {"regrown": "zero", "adjust_prune_rate": True, "redistribution_rule": "capped", "initial_mask": ""}
OLD_OWN = {
    "dense": {"name": "dense"},
    "lottery": {"name": "lottery", "trained_weights": "", "initial_weights": ""},
    "pruning": {"name": "pruning", "start_fraction": 0.00796, "end_fraction": 0.75, "scope": "global"},
    "rigl": {"name": "rigl", **OLD_DROP_AND_GROW},
    "rigl_sg": {"name": "rigl", **OLD_DROP_AND_GROW, "redistribution": "grad"},
    "rigl_sm": {"name": "rigl", **OLD_DROP_AND_GROW, "redistribution": "momentum"},
    "set": {"name": "set", **OLD_DROP_AND_GROW},
    "small_dense": {"name": "small_dense", "width_rule": "sqrt"},
    "snfs": {"name": "snfs", **OLD_DROP_AND_GROW, "redistribution": "momentum", "regrown": "keep",
             "growth_momentum": "optimizer", "momentum_coefficient": 0.9},
    "static": {"name": "static"},
}  # fmt: skip


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
    configs = CONFIGS  # each conf/masking file composed with the shared options it lists
    assert set(available_methods()) <= set(configs)
    for stem, config in configs.items():
        method = build_method(config)
        assert set(config) - {"name"} == set(method.option_names()), stem
    assert configs["rigl_sg"]["redistribution"] == "grad" and configs["rigl_sm"]["redistribution"] == "momentum"


def old_layout(stem, **changes):
    """The masking node that choice ``stem`` composed to before each method took only its own options."""
    return {**OLD_SHARED, **OLD_OWN[stem], **changes}


def test_the_old_layout_above_is_every_method_s_own_options_plus_the_shared_keys():
    assert set(CONFIGS) - set(OLD_OWN) == {"srigl"}  # methods added since have no runs of the old layout
    for stem, config in ((stem, CONFIGS[stem]) for stem in OLD_OWN):
        # Options added since (the mask structure) are inert at their defaults: not part of a run's identity.
        config = {key: value for key, value in config.items() if key not in build_method(config).inert_options(config)}
        assert set(config) <= set(old_layout(stem)), stem
        assert {key: old_layout(stem)[key] for key in config} == config, stem  # no default changed


def test_a_composed_node_holds_only_its_method_s_options_whatever_the_scale_or_dataset():
    for stem in CONFIGS:
        for extra in ([], ["scale=smoke"], ["dataset=cifar100"]):
            masking = OmegaConf.to_container(compose_config(f"masking={stem}", *extra).masking, resolve=True)
            method = build_method(masking)
            assert set(masking) == {"name", *method.option_names()}, (stem, extra)
    dropped = {"alpha", "t_end_fraction", "redistribution", "update_timing", "drop_rounding"}
    assert not dropped & set(CONFIGS["static"]) and not dropped & set(CONFIGS["lottery"])
    assert set(CONFIGS["dense"]) == {"name", "density"}
    assert set(CONFIGS["small_dense"]) == {"name", "density", "width_rule"}
    assert "delta_t" not in CONFIGS["static"] and "delta_t" not in CONFIGS["lottery"]
    assert not {"alpha", "t_end_fraction", "redistribution"} & set(CONFIGS["pruning"])


def test_the_class_defaults_are_the_files_defaults():
    """Each method's options have one default: its class's is its composed file's."""
    for stem, config in CONFIGS.items():
        if stem not in ("rigl_sg", "rigl_sm"):  # RigL with another redistribution
            assert {**available_methods()[config["name"]].option_defaults(), "name": config["name"]} == config, stem


def test_a_method_refuses_an_option_it_does_not_read():
    message = r"masking.alpha is not an option of method 'dense'; its options are: density$"
    with pytest.raises(ConfigError, match=message):
        build_method({"name": "dense", "alpha": 0.5})
    for name, option in [("static", "redistribution"), ("small_dense", "distribution"), ("pruning", "alpha"),
                         ("lottery", "t_end_fraction"), ("static", "update_timing"), ("static", "delta_t")]:  # fmt: skip
        with pytest.raises(ConfigError, match=f"masking.{option} is not an option of method '{name}'"):
            build_method({"name": name, option: OLD_SHARED[option]})


@pytest.mark.parametrize("stem", list(OLD_OWN))
def test_old_and_new_layouts_of_one_run_have_one_canonical_masking(stem):
    # The mask-structure options are inert when unstructured: a run's identity leaves them out, so runs
    # recorded before they existed are the same runs.
    identity = {key: value for key, value in CONFIGS[stem].items() if key not in STRUCTURE_OPTIONS}
    assert canonical_masking(old_layout(stem)) == canonical_masking(CONFIGS[stem]) == identity
    taken = set(CONFIGS[stem])
    cases = [
        ({"density": 0.2}, ["masking.density=0.2"]),
        ({"distribution": "erk"}, ["masking.distribution=erk"]),
        ({"delta_t": 8}, ["scale=smoke"]),
        ({"alpha": 0.5, "delta_t": 250}, ["masking.alpha=0.5", "masking.delta_t=250"]),
        ({"redistribution": "grad", "update_timing": "google"}, ["masking.redistribution=grad",
                                                                 "masking.update_timing=google"]),
    ]  # fmt: skip
    for changes, overrides in cases:
        meaningful = [override for override in overrides if override.startswith("scale=")
                      or override.split("=")[0].removeprefix("masking.") in taken]  # fmt: skip
        new = OmegaConf.to_container(compose_config(f"masking={stem}", *meaningful).masking, resolve=True)
        assert canonical_masking(old_layout(stem, **changes)) == canonical_masking(new), (stem, changes)


def test_canonical_masking_keeps_the_method_s_options_only_and_leaves_an_unknown_method_alone():
    assert canonical_masking({"name": "rigl", "density": 0.2}) == {"name": "rigl", "density": 0.2}  # never filled
    assert canonical_masking({"name": "dense", "alpha": 0.5, "distribution": "erk"}) == {"name": "dense"}
    assert canonical_masking({"name": "gone", "alpha": 0.5}) == {"name": "gone", "alpha": 0.5}
    assert canonical_masking({"alpha": 0.5}) == {"alpha": 0.5}
