"""Random images of the configured shape (CIFAR's by default) and random labels, for benchmarks: no file, no
download, no meaning. ``dataset.train_pool`` training and ``dataset.test_size`` test images, drawn from
``dataset.split_seed``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rigl_repro.data.registry import RawData, register_source
from rigl_repro.errors import require_int


def validate_synthetic(cfg: Mapping[str, Any]) -> None:
    """Both sets hold at least one image (the label check reads the largest label of each)."""
    require_int("dataset.train_pool", cfg["train_pool"], 1)
    require_int("dataset.test_size", cfg["test_size"], 1)


@register_source("synthetic", validate=validate_synthetic)
def load_synthetic(cfg: Mapping[str, Any]) -> RawData:
    """``dataset.source=synthetic``: uint8 pixels uniform in [0, 255] and labels uniform over
    ``dataset.num_classes``, the training images first, from one generator."""
    generator = torch.Generator().manual_seed(cfg["split_seed"])
    shape = (cfg["channels"], cfg["image_size"], cfg["image_size"])
    images = torch.randint(0, 256, (cfg["train_pool"] + cfg["test_size"], *shape), generator=generator)
    labels = torch.randint(0, cfg["num_classes"], (len(images),), generator=generator)
    split = cfg["train_pool"]
    return images[:split].to(torch.uint8), labels[:split], images[split:].to(torch.uint8), labels[split:]
