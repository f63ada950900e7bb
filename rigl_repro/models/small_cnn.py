"""A small CNN for the embedded 8x8 grey-scale digits dataset: fast enough for demos and CPU tests."""

from __future__ import annotations

import torch
from torch import nn

from rigl_repro.models.common import pooled_logits, scaled


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        channels = [scaled(c, width) for c in (32, 64, 128)]
        layers: list[nn.Module] = []
        previous = in_channels
        for index, out in enumerate(channels):
            layers += [
                nn.Conv2d(previous, out, 3, 1 if index == 0 else 2, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            previous = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_logits(self.features(x), self.fc)


def small_cnn(num_classes: int = 10, width: float = 1.0) -> SmallCNN:
    return SmallCNN(num_classes, 1, width)
