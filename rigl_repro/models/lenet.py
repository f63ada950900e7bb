"""LeNet-5 (LeCun et al. 1998) for 28x28 grey images such as Fashion-MNIST, with BatchNorm after each
convolution (a fixed sparse network at 5% density does not train without it).

Two 5x5 convolutions (6 and 16 channels, each followed by 2x2 max-pooling) and three linear layers
(120, 84, classes): 44,190 weights for 10 classes, of which the first convolution holds 150, so
Uniform's dense first layer costs almost nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from rigl_repro.models.common import init_convs, scaled


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        channels = [scaled(6, width), scaled(16, width)]
        units = [scaled(120, width), scaled(84, width)]
        side = ((image_size - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 5, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 5, bias=False), nn.BatchNorm2d(channels[1]), nn.ReLU(),
            nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(channels[1] * side * side, units[0]), nn.ReLU(),
            nn.Linear(units[0], units[1]), nn.ReLU(),
            nn.Linear(units[1], num_classes),
        )  # fmt: skip
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def lenet5(num_classes: int = 10, width: float = 1.0) -> LeNet5:
    """LeNet-5 for 28x28 grey images, optionally narrowed by ``width`` (the small-dense baseline)."""
    return LeNet5(num_classes, width)
