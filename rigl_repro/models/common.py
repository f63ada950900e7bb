"""Pieces every model here shares: channel scaling for the width multiplier, conv initialisation, and the
global-average-pool classifier head."""

from __future__ import annotations

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier, rounded down as the report's code does (``int(c * s)``), and
    at least one channel."""
    return max(1, int(channels * width))


def init_convs(model: nn.Module) -> None:
    """He (fan-out) initialisation of every convolution, as in the reference ResNet and WRN code."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def pooled_logits(features: torch.Tensor, classifier: nn.Linear) -> torch.Tensor:
    """Global average pooling over space, then the linear classifier."""
    # A mean rather than adaptive_avg_pool2d: its CUDA backward has no deterministic implementation.
    return classifier(features.mean((2, 3)))
