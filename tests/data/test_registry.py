"""Datasets are a registry: each ``dataset.source`` is one module that registers its loader, where-options and
option checks, and each dataset YAML names its own training recipe; a new dataset touches nothing else."""

import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import rigl_repro.data.registry as registry
from rigl_repro.config import CONF_DIR, compose_config
from rigl_repro.data import available_sources, load_splits, location_options, register_source
from rigl_repro.data.digits import DIGITS_IMAGES, load_digits_uint8
from rigl_repro.errors import ConfigError

DATASETS = ("cifar10", "cifar100", "digits", "fashion_mnist", "synthetic")
# What run identities dropped before sources declared their where-options (results.py's old constant).
DROPPED_BEFORE = ("root", "system_root", "download", "raw_md5")
CPU = torch.device("cpu")


def dataset_config(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(list(overrides)).dataset, resolve=True)


def test_the_registry_lists_the_five_sources_one_per_dataset_yaml():
    assert available_sources() == DATASETS
    assert sorted(path.stem for path in (CONF_DIR / "dataset").glob("*.yaml")) == list(DATASETS)
    assert all(dataset_config(f"dataset={name}")["source"] == name for name in DATASETS)


def test_an_unknown_source_is_one_line_naming_the_registered_ones():
    with pytest.raises(ConfigError) as refused:
        load_splits({**dataset_config("dataset=digits"), "source": "imagenet"}, CPU)
    assert str(refused.value) == (
        "dataset.source='imagenet' is not known; choose one of: cifar10, cifar100, digits, fashion_mnist, synthetic"
    )


def test_the_common_options_are_checked_before_the_source():
    """The order of the checks is the one before sources were registered."""
    bad = {**dataset_config("dataset=digits"), "source": "imagenet", "channels": 0}
    with pytest.raises(ConfigError, match=r"^dataset.channels=0 is invalid; expected an integer >= 1$"):
        load_splits(bad, CPU)
    with pytest.raises(ConfigError, match=r"^dataset.download='maybe' is invalid"):
        load_splits({**dataset_config("dataset=digits"), "download": "maybe"}, CPU)


@pytest.mark.parametrize("scale", ["paper", "smoke"])
@pytest.mark.parametrize("name", DATASETS)
def test_location_options_drop_exactly_the_keys_run_identities_dropped_before(name, scale):
    dataset = dataset_config(f"dataset={name}", f"scale={scale}")
    kept = {key for key in dataset if key not in location_options(dataset)}
    assert kept == {key for key in dataset if key not in DROPPED_BEFORE}
    own = registry.get_source(dataset["source"]).location_options
    assert set(own) <= set(dataset), "a source declares only where-options its YAML has"
    assert set(own) == set(DROPPED_BEFORE) & set(dataset)


def test_the_standard_where_options_are_dropped_for_any_source_even_unregistered():
    assert location_options({**dataset_config("dataset=digits"), "root": "/data"}) == DROPPED_BEFORE
    assert location_options({"source": "since_removed", "root": "/data"}) == DROPPED_BEFORE
    assert location_options({}) == DROPPED_BEFORE


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry, restored when the test ends: sources registered by a test do not outlive it."""
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    return registry.REGISTRY


def test_a_dataset_registered_in_one_module_loads_through_load_splits(scratch_registry):
    """The seam: a source defined here, with a where-option and a check of its own, and no project file
    touched, is listed, loaded, split and identified as the built-in ones are."""
    images = torch.arange(12 * 3 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8).view(12, 3, 2, 2)
    labels = torch.arange(12) % 3

    def validate_toy(cfg):
        if cfg["flavour"] not in ("plain", "odd"):
            raise ConfigError(f"dataset.flavour={cfg['flavour']!r} is not known; choose one of: plain, odd")

    @register_source("toy", location_options=("cache_dir",), validate=validate_toy)
    def load_toy(cfg):
        assert cfg["source"] == "toy" and cfg["cache_dir"] == "/nowhere"
        return images[:10], labels[:10], images[10:], labels[10:]

    toy = {
        "name": "toy", "source": "toy", "cache_dir": "/nowhere", "flavour": "plain", "num_classes": 3,
        "image_size": 2, "channels": 3, "train_pool": 10, "val_size": 2, "val_split": "last", "split_seed": 0,
        "augment": "none", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
    }  # fmt: skip
    assert "toy" in available_sources()
    splits = load_splits(toy, CPU)
    assert torch.equal(splits.train.images, images[:8]) and torch.equal(splits.val.labels, labels[8:10])
    assert torch.equal(splits.test.images, images[10:]) and splits.augment == "none"
    assert location_options(toy) == (*DROPPED_BEFORE, "cache_dir")
    with pytest.raises(ConfigError, match="dataset.flavour='sour' is not known"):
        load_splits({**toy, "flavour": "sour"}, CPU)
    with pytest.raises(ConfigError, match="dataset.train_pool=11 but the dataset has 10 training images"):
        load_splits({**toy, "train_pool": 11}, CPU)
    with pytest.raises(ValueError, match="dataset source 'toy' is registered twice"):
        register_source("toy")(lambda cfg: None)


def test_the_toy_source_is_gone_after_its_test():
    assert available_sources() == DATASETS


def test_a_new_dataset_yaml_names_an_existing_recipe_and_train_still_overrides_it(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    digits = (conf / "dataset" / "digits.yaml").read_text()
    toy = digits.replace("_global_.train: digits", "_global_.train: cifar10").replace("name: digits", "name: toy")
    (conf / "dataset" / "toy.yaml").write_text(toy)  # a new dataset's YAML, reusing the CIFAR-10 recipe
    recipes = {name: OmegaConf.load(CONF_DIR / "train" / f"{name}.yaml") for name in ("cifar10", "fashion_mnist")}
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        toy_run = compose("config", overrides=["dataset=toy"])
        assert toy_run.dataset.name == "toy" and toy_run.train == recipes["cifar10"]
        assert compose("config", overrides=["dataset=toy", "train=fashion_mnist"]).train == recipes["fashion_mnist"]


@pytest.mark.parametrize("name", DATASETS)
def test_each_dataset_selects_its_recipe_and_train_or_scale_smoke_still_apply(name):
    recipe = {other: OmegaConf.load(CONF_DIR / "train" / f"{other}.yaml") for other in DATASETS}
    assert compose_config([f"dataset={name}"]).train == recipe[name]
    other = "digits" if name != "digits" else "cifar100"
    assert compose_config([f"dataset={name}", f"train={other}"]).train == recipe[other]
    smoke = compose_config([f"dataset={name}", "scale=smoke"])  # the command line's dataset wins over the scale's
    assert smoke.dataset.name == name and smoke.train == OmegaConf.merge(recipe[name], {"epochs": 4})
    smoke = compose_config(["scale=smoke"])
    assert smoke.dataset.name == "digits" and smoke.train == OmegaConf.merge(recipe["digits"], {"epochs": 4})
    keys = list(compose_config([f"dataset={name}"]))
    assert keys.index("model") + 1 == keys.index("dataset") == keys.index("train") - 1  # the composed key order


def test_digits_test_size_is_checked_before_loading_against_the_bundled_count(monkeypatch):
    assert len(load_digits_uint8()[1]) == DIGITS_IMAGES
    monkeypatch.setattr("rigl_repro.data.digits.load_digits_uint8", lambda: pytest.fail("loaded before the check"))
    for size in (0, DIGITS_IMAGES, 1.5):
        expected = rf"^dataset.test_size={size} is invalid; expected an integer in \[1, 1796\]$"
        with pytest.raises(ConfigError, match=expected):
            load_splits(dataset_config("dataset=digits", f"dataset.test_size={size}"), CPU)


def test_digits_hold_out_a_seeded_test_set_and_keep_the_rest_in_drawn_order():
    images, labels = load_digits_uint8()
    splits = load_splits(dataset_config("dataset=digits", "dataset.val_size=0"), CPU)
    order = torch.randperm(DIGITS_IMAGES, generator=torch.Generator().manual_seed(1))  # split_seed + 1
    assert torch.equal(splits.test.images, images[order[:300]])
    assert torch.equal(splits.train.labels, labels[order[300:]])


def test_synthetic_images_are_one_seeded_draw_training_images_first():
    sizes = ("dataset.train_pool=20", "dataset.test_size=6", "dataset.split_seed=3")
    dataset = dataset_config("dataset=synthetic", *sizes)
    splits = load_splits(dataset, CPU)
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (26, 3, 32, 32), generator=generator)
    labels = torch.randint(0, 10, (26,), generator=generator)
    assert splits.train.images.dtype == torch.uint8 and splits.val is None
    assert torch.equal(splits.train.images, images[:20].to(torch.uint8))
    assert torch.equal(splits.test.labels, labels[20:])


@pytest.mark.parametrize("option", ["train_pool", "test_size"])
def test_synthetic_sets_without_images_are_one_line(option):
    """Before its own check an empty set failed deep in torch (``max()`` of nothing)."""
    with pytest.raises(ConfigError, match=rf"^dataset.{option}=0 is invalid; expected an integer >= 1$"):
        load_splits(dataset_config("dataset=synthetic", f"dataset.{option}=0"), CPU)
