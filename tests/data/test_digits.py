import sys

import torch

from rigl_repro.data import digits


def sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    return (images * (255.0 / 16.0)).round().to(torch.uint8), torch.tensor(bunch.target, dtype=torch.long)


def test_the_digits_read_from_scikit_learn_s_file_are_load_digits_own(monkeypatch):
    assert digits.digits_file() is not None
    images, labels = digits.load_digits_uint8()
    expected_images, expected_labels = sklearn_digits()
    assert images.shape == (digits.DIGITS_IMAGES, 1, 8, 8) and images.dtype == torch.uint8
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    monkeypatch.setattr(digits, "digits_file", lambda: None)  # the file elsewhere: through load_digits
    fallback_images, fallback_labels = digits.load_digits_uint8()
    assert torch.equal(fallback_images, expected_images) and torch.equal(fallback_labels, expected_labels)


def test_reading_the_digits_does_not_import_scikit_learn(monkeypatch):
    for name in [name for name in sys.modules if name == "sklearn" or name.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    digits.load_digits_uint8()
    assert "sklearn.datasets" not in sys.modules
