"""scikit-learn's bundled 8x8 digits (1,797 grey images, 10 classes): a real dataset that needs no download,
for demos and end-to-end tests."""

from __future__ import annotations

import torch


def load_digits_uint8() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as uint8 images (N, 1, 8, 8) in [0, 255] and their labels."""
    from sklearn.datasets import load_digits  # imported here: only this dataset needs scikit-learn

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    return (images * (255.0 / 16.0)).round().to(torch.uint8), torch.tensor(data.target, dtype=torch.long)
