"""Models of the report (WRN-22-2, CIFAR ResNet-50) and a small CNN for the embedded dataset, each with a
width multiplier for the small-dense baseline."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rigl_repro.models.common import scaled
from rigl_repro.models.resnet import resnet50
from rigl_repro.models.small_cnn import small_cnn
from rigl_repro.models.wide_resnet import wrn22_2

MODELS: dict[str, Callable[..., nn.Module]] = {"wrn22_2": wrn22_2, "resnet50": resnet50, "small_cnn": small_cnn}

__all__ = ["MODELS", "resnet50", "scaled", "small_cnn", "wrn22_2"]
