"""Wide ResNet (Zagoruyko & Komodakis 2016) for 32x32 inputs; WRN-22-2 is the report's CIFAR-10 model.

Pre-activation basic blocks, a 1x1 shortcut convolution wherever the shape changes, no biases in
convolutions, dropout between the two convolutions of a block (0.3 in the report's code,
``models/__init__.py``, and in Evci et al.'s), He fan-out initialisation of the convolutions and a zero
classifier bias (the report's ``models/wide_resnet.py``). WRN-22-2 with 10 classes has 1,079,642
parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from rigl_repro.models.common import init_convs, pooled_logits, scaled


class WideBasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + residual


class WideResNet(nn.Module):
    def __init__(
        self, depth: int = 22, widen: int = 2, num_classes: int = 10, width: float = 1.0, dropout: float = 0.3
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        blocks_per_group = (depth - 4) // 6
        stem = scaled(16, width)
        widths = [scaled(16 * widen * 2**g, width) for g in range(3)]
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        in_channels = stem
        for group, out_channels in enumerate(widths):
            for block in range(blocks_per_group):
                stride = 2 if group > 0 and block == 0 else 1
                layers.append(WideBasicBlock(in_channels, out_channels, stride, dropout))
                in_channels = out_channels
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)
        init_convs(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_logits(torch.relu(self.bn(self.blocks(self.conv1(x)))), self.fc)


def wrn22_2(num_classes: int = 10, width: float = 1.0, dropout: float = 0.3) -> WideResNet:
    """WRN-22-2, optionally narrowed by ``width`` (the small-dense baseline)."""
    return WideResNet(22, 2, num_classes, width, dropout)
