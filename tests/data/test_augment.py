import numpy as np
import pytest
import torch
from PIL import Image

import rigl_repro.data.augment as augment_module
from rigl_repro.data import AUGMENTATIONS, augment_batch, normalise, random_crop_flip
from rigl_repro.data.augment import crop_resize, random_resized_crop_flip


def padded(images: torch.Tensor, padding: int, mode: str) -> torch.Tensor:
    """The reference padding: numpy's reflect / symmetric / constant."""
    numpy_mode = {"reflect": "reflect", "symmetric": "symmetric", "zero": "constant"}[mode]
    width = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    return torch.from_numpy(np.pad(images.numpy(), width, mode=numpy_mode))


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "zero"])
def test_each_image_is_a_window_of_the_padded_image_possibly_flipped(mode):
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, 2, torch.Generator().manual_seed(0), mode)
    assert out.shape == images.shape and out.dtype == torch.uint8
    flips = 0
    for image, result in zip(padded(images, 2, mode), out):
        windows = [image[:, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        plain = any(torch.equal(result, w) for w in windows)
        flipped = any(torch.equal(result, w.flip(2)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 15 < flips < 49  # about half of 64


@pytest.mark.parametrize("augmentation", ["reflect_crop_flip", "symmetric_crop_flip", "resized_crop_flip", "none"])
def test_a_constant_image_stays_constant(augmentation):
    images = torch.full((32, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(augment_batch(images, augmentation, torch.Generator().manual_seed(0)), images)


def test_zero_padding_brings_in_black_borders():
    images = torch.full((64, 3, 32, 32), 77, dtype=torch.uint8)
    out = augment_batch(images, "zero_crop_flip", torch.Generator().manual_seed(0))
    assert (out == 0).any() and set(out.unique().tolist()) == {0, 77}


def test_crop_resize_is_pil_crop_then_bilinear_resize_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    batch = 64
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=generator)
    box_h = torch.randint(1, 33, (batch,), generator=generator).float()
    box_w = torch.randint(1, 33, (batch,), generator=generator).float()
    top = torch.floor(torch.rand(batch, generator=generator) * (33 - box_h))
    left = torch.floor(torch.rand(batch, generator=generator) * (33 - box_w))
    flip = torch.rand(batch, generator=generator) < 0.5
    ours = crop_resize(images, top, left, box_h, box_w, flip)
    for i in range(batch):
        t, x, h, w = int(top[i]), int(left[i]), int(box_h[i]), int(box_w[i])
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy()).crop((x, t, x + w, t + h))
        pil = pil.resize((32, 32), Image.BILINEAR)
        if flip[i]:
            pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
        assert torch.equal(ours[i], torch.from_numpy(np.array(pil)).permute(2, 0, 1)), (t, x, h, w)


def test_resized_crop_boxes_follow_torchvision_defaults(monkeypatch):
    boxes = {}

    def record(images, top, left, box_h, box_w, flip):
        boxes.update(top=top, left=left, h=box_h, w=box_w, flip=flip)
        return images

    monkeypatch.setattr(augment_module, "crop_resize", record)
    random_resized_crop_flip(torch.zeros(4000, 1, 32, 32, dtype=torch.uint8), torch.Generator().manual_seed(1))
    h, w = boxes["h"], boxes["w"]
    assert ((h >= 1) & (h <= 32) & (w >= 1) & (w <= 32)).all()
    assert ((boxes["top"] >= 0) & (boxes["top"] + h <= 32) & (boxes["left"] >= 0) & (boxes["left"] + w <= 32)).all()
    area = h * w / 1024
    assert area.min() >= 0.06 and area.mean().item() == pytest.approx(0.5, abs=0.05)  # ~U(0.08, 1), rounded sides
    assert ((w / h) >= 3 / 4 * 0.8).all() and ((w / h) <= 4 / 3 * 1.25).all()
    assert 0.45 < boxes["flip"].float().mean().item() < 0.55
    assert (boxes["top"] == 0).logical_and(h == 32).any()  # boxes as high as the image exist


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_augmentation_is_reproducible_from_the_generator_state(augmentation):
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = augment_batch(images, augmentation, generator)
    generator.set_state(state)
    assert torch.equal(first, augment_batch(images, augmentation, generator))


def test_normalise_scales_and_standardises_per_channel():
    images = torch.full((1, 2, 1, 1), 255, dtype=torch.uint8)
    out = normalise(images, torch.tensor([0.5, 0.0]), torch.tensor([0.25, 2.0]))
    assert out.flatten().tolist() == [2.0, 0.5]
