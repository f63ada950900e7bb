"""Models of the report (WRN-22-2, CIFAR ResNet-50), LeNet-5 for Fashion-MNIST and a small CNN for the
embedded dataset, each with a width multiplier for the small-dense baseline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from rigl_repro.errors import ConfigError, require_in_range
from rigl_repro.models.common import scaled
from rigl_repro.models.lenet import lenet5
from rigl_repro.models.resnet import resnet50
from rigl_repro.models.small_cnn import small_cnn
from rigl_repro.models.wide_resnet import wrn22_2

MODELS: dict[str, Callable[..., nn.Module]] = {
    "wrn22_2": wrn22_2, "resnet50": resnet50, "small_cnn": small_cnn, "lenet5": lenet5,
}  # fmt: skip



def build_model(cfg: Mapping[str, Any], num_classes: int, width: float | None = None) -> nn.Module:
    """The model a ``model`` config describes (``name``, ``width`` and the model's own options).

    ``width`` overrides the config's width multiplier (the small-dense baseline sets it).
    """
    options = dict(cfg)
    name = options.pop("name", None)
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is not known; choose one of: {', '.join(MODELS)}")
    config_width = options.pop("width", 1.0)
    width = require_in_range("model.width", config_width if width is None else width, 0.0, 64.0, low_open=True)
    try:
        return MODELS[name](num_classes, width=width, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model={name}: {error}") from None


def meta_model(cfg: Mapping[str, Any], num_classes: int, width: float | None = None) -> nn.Module:
    """The model ``build_model`` makes, on the meta device: shapes only, no memory, no random initialisation
    (so building it draws nothing from the run's random streams). Planning, FLOP counting and loading an
    export read models this way."""
    with torch.device("meta"):
        return build_model(cfg, num_classes, width)


def count_sparsifiable_weights(cfg: Mapping[str, Any], num_classes: int, width: float) -> int:
    """Conv and linear weights of the model at ``width``, counted on the meta device (no memory, no init)."""
    from rigl_repro.sparsity.masks import weight_shapes

    shapes = weight_shapes(meta_model(cfg, num_classes, width))
    return sum(torch.Size(shape).numel() for shape in shapes.values())


__all__ = [
    "MODELS", "build_model", "count_sparsifiable_weights", "lenet5", "meta_model", "resnet50", "scaled", "small_cnn",
    "wrn22_2",
]  # fmt: skip
