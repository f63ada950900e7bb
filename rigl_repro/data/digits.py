"""scikit-learn's bundled 8x8 digits (1,797 grey images, 10 classes): a real dataset that needs no download,
for demos and end-to-end tests. It has no official test set: ``dataset.test_size`` images, drawn with
``dataset.split_seed``, are held out as one."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rigl_repro.data.registry import RawData, register_source
from rigl_repro.errors import require_int

DIGITS_IMAGES = 1797  # scikit-learn's file: the bound of dataset.test_size, known without loading it


def digits_file() -> Path | None:
    """scikit-learn's ``digits.csv.gz`` (64 pixel columns in [0, 16], then the label), found without importing
    scikit-learn, or None when it is not where scikit-learn keeps it."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without running it
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digits_uint8() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as uint8 images (N, 1, 8, 8) in [0, 255] and their labels.

    Read from scikit-learn's file as ``sklearn.datasets.load_digits`` reads it (``np.loadtxt``, comma-separated):
    importing ``sklearn.datasets`` takes two seconds, most of a short run's start on this machine. Where the file is
    not found, through ``load_digits``."""
    path = digits_file()
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, labels = bunch.data, bunch.target
    else:
        with gzip.open(path, "rt") as file:
            table = np.loadtxt(file, delimiter=",")
        pixels, labels = table[:, :-1], table[:, -1].astype(int)
    images = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return (images * (255.0 / 16.0)).round().to(torch.uint8), torch.tensor(labels, dtype=torch.long)


def validate_digits(cfg: Mapping[str, Any]) -> None:
    """``dataset.test_size`` leaves at least one training image."""
    require_int("dataset.test_size", cfg["test_size"], 1, DIGITS_IMAGES - 1)


@register_source("digits", validate=validate_digits)
def load_digits_source(cfg: Mapping[str, Any]) -> RawData:
    """``dataset.source=digits``: a test set of ``dataset.test_size`` images drawn by a permutation seeded with
    ``dataset.split_seed + 1`` (so it differs from the validation draw's), the rest for training in their
    drawn order."""
    images, labels = load_digits_uint8()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(cfg["split_seed"] + 1))
    test, rest = order[: cfg["test_size"]], order[cfg["test_size"] :]
    return images[rest], labels[rest], images[test], labels[test]
