import torch

from rigl_repro.data import normalise, random_crop_flip


def test_each_image_is_a_window_of_the_zero_padded_image_possibly_flipped():
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flips = 0
    for image, result in zip(padded, out):
        windows = [image[:, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        plain = any(torch.equal(result, w) for w in windows)
        flipped = any(torch.equal(result, w.flip(2)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 15 < flips < 49  # about half of 64


def test_augmentation_is_reproducible_from_the_generator_state():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = random_crop_flip(images, 4, generator)
    generator.set_state(state)
    assert torch.equal(first, random_crop_flip(images, 4, generator))


def test_normalise_scales_and_standardises_per_channel():
    images = torch.full((1, 2, 1, 1), 255, dtype=torch.uint8)
    out = normalise(images, torch.tensor([0.5, 0.0]), torch.tensor([0.25, 2.0]))
    assert out.flatten().tolist() == [2.0, 0.5]
