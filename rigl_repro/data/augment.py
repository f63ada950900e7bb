"""Batch augmentation on the training device: no per-sample Python, no host-device synchronisation."""

from __future__ import annotations

import torch
from torch import nn


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding of ``padding`` pixels, and a horizontal flip with probability 1/2,
    drawn independently for every image of the batch (the standard CIFAR augmentation)."""
    batch, _, height, width = images.shape
    device = images.device
    padded = nn.functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator, device=device)
    rows = top + torch.arange(height, device=device)
    cols = left + torch.arange(width, device=device)
    flip = torch.rand(batch, generator=generator, device=device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = torch.arange(batch, device=device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images to float, scaled to [0, 1] and standardised per channel."""
    return (images.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
