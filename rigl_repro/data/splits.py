"""Train / validation / test splits, held whole on the training device as uint8 tensors, from the source
that ``dataset.source`` names (``rigl_repro.data.registry``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from rigl_repro.data.augment import AUGMENTATIONS
from rigl_repro.data.registry import get_source
from rigl_repro.errors import ConfigError, require_bool, require_choice, require_int

# Which training images are held out for validation: the last ones in file order (the report's code,
# ``DatasetSplitter`` over an unshuffled index map in ``data.py``) or a random draw fixed by split_seed.
VAL_SPLITS = ("last", "random")


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W) on the training device
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataSplits:
    train: Split
    val: Split | None  # None when training on every training image (the report's Table 1)
    test: Split
    mean: torch.Tensor
    std: torch.Tensor
    augment: str  # one of rigl_repro.data.augment.AUGMENTATIONS


def holdout(
    images: torch.Tensor, labels: torch.Tensor, size: int, seed: int, how: str = "random"
) -> tuple[Split, Split | None]:
    """Split off ``size`` examples as the validation set: the last ``size`` (``how="last"``) or ones chosen
    by a permutation fixed by ``seed`` (``"random"``). The others keep their order."""
    if size == 0:
        return Split(images, labels), None
    if not 0 < size < len(labels):
        raise ConfigError(f"dataset.val_size={size} must be in [0, {len(labels) - 1}] for this dataset")
    if how == "last":
        order = torch.arange(len(labels))
    else:
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    keep, held = order[:-size], order[-size:]
    return Split(images[keep], labels[keep]), Split(images[held], labels[held])


def validate_dataset_options(cfg: Mapping[str, Any]) -> None:
    """The options that describe the images, and the standard where-options (``STANDARD_LOCATION_OPTIONS``,
    one meaning in every source that has them): checked before any file is read."""
    if "download" in cfg:
        require_bool("dataset.download", cfg["download"])
    if cfg.get("system_root") is not None and not isinstance(cfg["system_root"], str):
        raise ConfigError(f"dataset.system_root={cfg['system_root']!r} is invalid; expected a folder or null")
    if "raw_md5" in cfg and not isinstance(cfg["raw_md5"], Mapping):
        raise ConfigError(f"dataset.raw_md5={cfg['raw_md5']!r} is invalid; expected a map file name -> MD5")
    channels = require_int("dataset.channels", cfg["channels"], 1)
    require_int("dataset.image_size", cfg["image_size"], 1)
    require_int("dataset.num_classes", cfg["num_classes"], 2)
    for option in ("mean", "std"):
        values = cfg[option]
        if not isinstance(values, (list, tuple)) or len(values) != channels:
            raise ConfigError(f"dataset.{option}={values!r} is invalid; expected a list of {channels} value(s), "
                              "one per channel")  # fmt: skip
        # The images are standardised by these: a std of 0 (or a value that is not a finite number) makes the
        # inputs infinite or NaN, and the run then fails as if it diverged.
        positive = option == "std"
        if not all(is_finite_number(value) and (value > 0 or not positive) for value in values):
            kind = "positive, finite number" if positive else "finite number"
            raise ConfigError(f"dataset.{option}={values!r} is invalid; expected a {kind} per channel")


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a real, finite number (not a bool, a string or NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_declared_shape(cfg: Mapping[str, Any], images: torch.Tensor) -> None:
    """The images are ``(dataset.channels, dataset.image_size, dataset.image_size)``, as declared: the model,
    its FLOP counts and the normalisation are built from the declared shape, so a wrong one would train (and
    report) another model than the one the data need. One check for every source, right after loading."""
    source, shape = cfg["source"], tuple(images.shape[1:])
    if len(shape) != 3:
        raise ConfigError(f"{source}'s images have shape {tuple(images.shape)}, not (N, C, H, W); fix its loader")
    channels, height, width = shape
    if channels != cfg["channels"]:
        raise ConfigError(f"dataset.channels={cfg['channels']} but {source}'s images have {channels} channel(s); "
                          f"set dataset.channels={channels} (and one dataset.mean and dataset.std per channel)")
    if (height, width) != (cfg["image_size"], cfg["image_size"]):
        fix = f"set dataset.image_size={height}" if height == width else "the models here take square images"
        raise ConfigError(f"dataset.image_size={cfg['image_size']} but {source}'s images are {height}x{width}; {fix}")


def load_splits(cfg: Mapping[str, Any], device: torch.device) -> DataSplits:
    """The splits that the ``dataset`` config describes, moved to ``device``: the common options checked, then
    the registered source's own, its images loaded and checked against the declared shape, and the validation set
    held out of its training images."""
    source = cfg["source"]
    validate_dataset_options(cfg)
    augmentation = require_choice("dataset.augment", cfg["augment"], AUGMENTATIONS)
    val_split = require_choice("dataset.val_split", cfg["val_split"], VAL_SPLITS)
    registered = get_source(source)  # after the common checks: a bad common option is reported first
    if registered.validate is not None:
        registered.validate(cfg)
    train_x, train_y, test_x, test_y = registered.load(cfg)
    for images in (train_x, test_x):
        check_declared_shape(cfg, images)
    if len(train_y) != cfg["train_pool"]:
        raise ConfigError(
            f"dataset.train_pool={cfg['train_pool']} but the dataset has {len(train_y)} training images; "
            "set it to the size of the training set (it fixes step counts for FLOP planning)"
        )
    labels_up_to = int(max(train_y.max(), test_y.max()))  # once, on the host, before training
    if labels_up_to >= cfg["num_classes"]:
        raise ConfigError(
            f"dataset.num_classes={cfg['num_classes']} but {source}'s labels go up to {labels_up_to}; "
            f"expected at least {labels_up_to + 1}"
        )
    train, val = holdout(train_x, train_y, int(cfg["val_size"]), int(cfg["split_seed"]), val_split)

    def to_device(split: Split | None) -> Split | None:
        return None if split is None else Split(split.images.to(device), split.labels.to(device))

    return DataSplits(
        train=to_device(train),
        val=to_device(val),
        test=to_device(Split(test_x, test_y)),
        mean=torch.tensor(cfg["mean"], dtype=torch.float32, device=device),
        std=torch.tensor(cfg["std"], dtype=torch.float32, device=device),
        augment=augmentation,
    )
