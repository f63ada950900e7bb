"""ResNet-50 for 32x32 inputs, as the report's code builds it for CIFAR-100.

One 3x3 stride-1 stem convolution and no max-pool (``stem="single"``; the report's text says two 3x3
convolutions, ``stem="double"``, but its FLOP figure, 2.59e9 per image, matches one), bottleneck blocks
[3, 4, 6, 3] with the stride on the 3x3 convolution, and the last BatchNorm of every residual branch
initialised to zero (He et al. 2019). With 100 classes it has 23,705,252 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from rigl_repro.models.common import init_convs, pooled_logits, scaled


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn3.weight)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))


STEMS = ("single", "double")


class CifarResNet50(nn.Module):
    def __init__(self, num_classes: int = 100, width: float = 1.0, stem: str = "single") -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        channels = scaled(64, width)
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        if stem == "double":
            layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        self.stem = nn.Sequential(*layers)
        blocks: list[nn.Module] = []
        in_channels = channels
        for group, block_count in enumerate([3, 4, 6, 3]):
            planes = scaled(64 * 2**group, width)
            out_channels = planes * Bottleneck.expansion
            for block in range(block_count):
                stride = 2 if group > 0 and block == 0 else 1
                blocks.append(Bottleneck(in_channels, planes, stride, out_channels))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_logits(self.blocks(self.stem(x)), self.fc)


def resnet50(num_classes: int = 100, width: float = 1.0, stem: str = "single") -> CifarResNet50:
    """The CIFAR ResNet-50, optionally narrowed by ``width`` (the small-dense baseline)."""
    return CifarResNet50(num_classes, width, stem)
