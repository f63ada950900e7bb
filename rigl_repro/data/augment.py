"""Batch augmentation on the training device: no per-sample Python, no host-device synchronisation.

``dataset.augment`` names one of ``AUGMENTATIONS``:

- ``reflect_crop_flip`` (the report's CIFAR-10, ``data.py``: ``Pad(4, padding_mode="reflect")``,
  ``RandomCrop(32)``, ``RandomHorizontalFlip()``); ``zero_crop_flip`` pads with zeros instead, and
  ``symmetric_crop_flip`` repeats the edge pixel as Evci et al.'s ``data_helper.py`` does;
- ``resized_crop_flip`` (the report's CIFAR-100: ``RandomResizedCrop(32)``, then the flip): a box of 8% to
  100% of the image with aspect ratio in [3/4, 4/3], resized back with bilinear interpolation;
- ``none``.

Images stay uint8 (N, C, H, W) throughout, as the report's PIL pipeline, which rounds its resized images
to 8 bits before normalising.
"""

from __future__ import annotations

import math

import torch

AUGMENTATIONS = ("reflect_crop_flip", "zero_crop_flip", "symmetric_crop_flip", "resized_crop_flip", "none")
PADDING = 4  # pixels, the CIFAR standard


def augment_batch(images: torch.Tensor, augmentation: str, generator: torch.Generator) -> torch.Tensor:
    """``images`` under one of ``AUGMENTATIONS``, drawn independently for every image of the batch."""
    if augmentation == "none":
        return images
    if augmentation == "resized_crop_flip":
        return random_resized_crop_flip(images, generator)
    return random_crop_flip(images, PADDING, generator, augmentation.removesuffix("_crop_flip"))


def padded_index(index: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Where a position of the padded image (``index`` in [-pad, size + pad)) reads from the image.

    ``reflect`` mirrors about the edge pixel (``numpy.pad(mode="reflect")``, PyTorch's and torchvision's
    reflect), ``symmetric`` about the edge (the edge pixel repeats); ``zero`` clamps, and the caller zeroes
    the positions outside.
    """
    if mode == "reflect":
        index = index.abs()
        return torch.where(index >= size, 2 * (size - 1) - index, index)
    if mode == "symmetric":
        index = torch.where(index < 0, -index - 1, index)
        return torch.where(index >= size, 2 * size - 1 - index, index)
    return index.clamp(0, size - 1)


def random_crop_flip(
    images: torch.Tensor, padding: int, generator: torch.Generator, pad_mode: str = "reflect"
) -> torch.Tensor:
    """A random ``H x W`` window of the image padded by ``padding`` pixels (``reflect``, ``symmetric`` or
    ``zero``), then a horizontal flip with probability 1/2."""
    batch, _, height, width = images.shape
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator, device=device)
    rows = top - padding + torch.arange(height, device=device)
    cols = left - padding + torch.arange(width, device=device)
    flip = torch.rand(batch, generator=generator, device=device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = torch.arange(batch, device=device)[:, None, None]
    source_rows, source_cols = padded_index(rows, height, pad_mode), padded_index(cols, width, pad_mode)
    cropped = images.permute(0, 2, 3, 1)[index, source_rows[:, :, None], source_cols[:, None, :]]
    if pad_mode == "zero":
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        cropped = cropped * inside[..., None]
    return cropped.permute(0, 3, 1, 2)


def random_resized_crop_flip(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop`` (its defaults) then ``RandomHorizontalFlip``, for a whole batch.

    The box is drawn as torchvision's ``get_params``: up to ``attempts`` draws of an area fraction in
    ``scale`` and a log-uniform aspect ratio in ``ratio``, the first box that fits, else the whole image.
    The box is then resized back to the image size (``crop_resize``).
    """
    batch, _, height, width = images.shape
    device = images.device
    area = torch.empty(batch, attempts, device=device).uniform_(*scale, generator=generator) * (height * width)
    log_ratio = torch.empty(batch, attempts, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = torch.exp(log_ratio)
    box_w = torch.round(torch.sqrt(area * aspect))
    box_h = torch.round(torch.sqrt(area / aspect))
    fits = (box_w >= 1) & (box_w <= width) & (box_h >= 1) & (box_h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    found = fits.any(1)
    box_w = torch.where(found, box_w.gather(1, first).squeeze(1), float(width))
    box_h = torch.where(found, box_h.gather(1, first).squeeze(1), float(height))
    top = torch.floor(torch.rand(batch, generator=generator, device=device) * (height - box_h + 1))
    left = torch.floor(torch.rand(batch, generator=generator, device=device) * (width - box_w + 1))
    flip = torch.rand(batch, generator=generator, device=device) < 0.5
    return crop_resize(images, top, left, box_h, box_w, flip)


def crop_resize(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    box_h: torch.Tensor,
    box_w: torch.Tensor,
    flip: torch.Tensor,
) -> torch.Tensor:
    """Each image's box (integer ``top``, ``left``, ``box_h``, ``box_w``, as float tensors) resized to the
    image size, flipped where ``flip``.

    As PIL resizes the cropped image with ``BILINEAR`` when enlarging it: linear interpolation at pixel
    centres, clamped to the box's own edges, a horizontal pass then a vertical one, each rounded to 8 bits.
    """
    batch, channels, height, width = images.shape
    device = images.device
    index = torch.arange(batch, device=device)[:, None]

    def taps(start: torch.Tensor, extent: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each output pixel of each box: the two source pixels and the weight of the second."""
        centres = torch.arange(size, device=device, dtype=torch.float32) + 0.5
        position = start[:, None] + centres * (extent[:, None] / size) - 0.5
        last = (start + extent - 1)[:, None]
        position = torch.minimum(torch.maximum(position, start[:, None]), last)
        first = position.floor()
        second = torch.minimum(first + 1, last)
        return first.long(), second.long(), position - first

    x0, x1, wx = taps(left, box_w, width)
    x0, x1, wx = (torch.where(flip[:, None], t.flip(1), t) for t in (x0, x1, wx))
    y0, y1, wy = taps(top, box_h, height)
    pixels = images.float().permute(0, 2, 3, 1)  # (B, H, W, C): one gather per tap
    every_row = torch.arange(height, device=device)[None, :, None]
    left_tap = pixels[index[:, :, None], every_row, x0[:, None, :]]
    right_tap = pixels[index[:, :, None], every_row, x1[:, None, :]]
    weight = wx[:, None, :, None]
    rows = (left_tap * (1 - weight) + right_tap * weight).add_(0.5).floor_()
    out = rows[index, y0] * (1 - wy[:, :, None, None]) + rows[index, y1] * wy[:, :, None, None]
    return out.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8).permute(0, 3, 1, 2)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images to float, scaled to [0, 1] and standardised per channel."""
    return (images.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
