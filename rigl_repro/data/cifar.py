"""CIFAR-10 and CIFAR-100 through ``torchvision.datasets``: the usual ``<root>/cifar-10-batches-py`` and
``<root>/cifar-100-python`` folders, shared with other projects, downloaded and MD5-checked by torchvision
when missing. Images come back as uint8 tensors (N, 3, 32, 32), decoded once."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import torch

from rigl_repro.data.registry import RawData, register_source
from rigl_repro.errors import ConfigError

CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}  # torchvision's dataset class of each


class DatasetMissingError(ConfigError):
    """The dataset is not on disk and could not be fetched."""


@contextmanager
def network_timeout(seconds: float = 30.0) -> Iterator[None]:
    """A timeout for torchvision's downloads, which set none: a network that drops packets fails in
    ``seconds`` instead of the system's minutes."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def as_tensors(
    images: np.ndarray | torch.Tensor, labels: list[int] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W, C) or (N, H, W) uint8 images as (N, C, H, W), and int64 labels."""
    images = torch.as_tensor(images)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(labels, dtype=torch.long)


def load_cifar(root: str | Path, name: str, download: bool = True) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels of CIFAR-10 or CIFAR-100 under ``root``."""
    import torchvision.datasets  # here: importing torchvision takes a second, and only these datasets need it

    dataset_class = getattr(torchvision.datasets, CLASSES[name])
    archive, folder = dataset_class.filename, dataset_class.base_folder
    try:
        with network_timeout():
            train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=False)
    except (RuntimeError, URLError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        how = "could not be downloaded" if download else "dataset.download=false"
        raise DatasetMissingError(
            f"{name} is not in {Path(root) / folder} and {how} ({reason}); put {archive} ({dataset_class.url}) "
            f"in {root} (it is then checked and extracted without a network), or set dataset.root to the folder "
            f"that holds {folder}/"
        ) from None
    return (*as_tensors(train.data, train.targets), *as_tensors(test.data, test.targets))


@register_source("cifar10", "cifar100", location_options=("root", "download"))
def load_cifar_source(cfg: Mapping[str, Any]) -> RawData:
    """``dataset.source=cifar10`` or ``cifar100``: the dataset under ``dataset.root``, downloaded when missing
    if ``dataset.download``."""
    return load_cifar(cfg["root"], cfg["source"], cfg["download"])
