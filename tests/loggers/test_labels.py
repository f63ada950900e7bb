"""Run labels from the resolved config: a run can be told apart in a tracker's run list (name), its table cell
averaged over seeds and nothing else (group), and found by what it is (tags)."""

import pytest
from omegaconf import OmegaConf

from rigl_repro.loggers import RunLabels, run_labels
from rigl_repro.loggers.labels import run_group
from tests.helpers import compose_config


def resolved(*overrides):
    return OmegaConf.to_container(compose_config(*overrides), resolve=True)


def test_a_rigl_erk_run_is_named_by_method_distribution_density_and_seed():
    labels = run_labels(resolved("variant=rigl_erk", "masking.density=0.1", "seed=2"))
    assert labels.name == "rigl erk d=0.1 seed 2"
    assert labels.group.startswith("digits small_cnn rigl erk d=0.1 · ") and len(labels.group.split(" · ")[1]) == 8
    assert labels.tags == ("digits", "small_cnn", "rigl", "erk", "paper", "rigl_erk")
    assert labels.job_type == "train"


def test_a_dense_run_shows_no_distribution_or_density_it_does_not_use():
    labels = run_labels(resolved("masking=dense", "masking.density=1.0"))
    assert labels.name == "dense seed 0"
    assert labels.group.startswith("digits small_cnn dense · ")
    assert labels.tags == ("digits", "small_cnn", "dense", "paper")
    small = run_labels(resolved("variant=small_dense", "masking.density=0.05"))
    assert small.name == "small_dense d=0.05 seed 0"  # its width follows the density
    assert small.tags == ("digits", "small_cnn", "small_dense", "paper")


def test_a_longer_run_says_so_in_its_name_and_group():
    labels = run_labels(resolved("variant=rigl_erk_2x"))
    assert labels.name == "rigl erk d=0.1 2x seed 0"
    assert " rigl erk d=0.1 2x · " in labels.group and labels.tags[-1] == "rigl_erk_2x"


def test_the_seeds_of_one_configuration_share_a_group_and_nothing_else_does():
    base = run_group(resolved("masking=set"))
    assert run_group(resolved("masking=set", "seed=1")) == base
    assert run_group(resolved("masking=set", "logger.mode=offline", "threads=1")) == base  # not the identity
    # Same readable part, other configurations: the hash keeps them apart.
    for other in ("train.lr=0.01", "masking.alpha=0.5", "dataset.val_size=0", "masking.delta_t=50"):
        group = run_group(resolved("masking=set", other))
        assert group != base and group.split(" · ")[0] == base.split(" · ")[0], other


def test_a_config_saved_before_scale_and_variant_existed_is_labelled_by_what_it_has():
    config = resolved("masking=static", "masking.distribution=er", "run_tag=-all-train-images")
    del config["scale"], config["variant"]
    labels = run_labels(config)
    assert labels.name == "static er d=0.1 seed 0"
    assert labels.tags == ("digits", "small_cnn", "static", "er", "all-train-images")
    assert run_labels({}) == RunLabels(name=None, group=run_group({}), job_type="train")


@pytest.mark.parametrize("scale", ["paper", "smoke"])
def test_the_scale_is_a_tag(scale):
    assert scale in run_labels(resolved(f"scale={scale}")).tags
