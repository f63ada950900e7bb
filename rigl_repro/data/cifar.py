"""CIFAR-10 and CIFAR-100 from the official python-pickle archives.

The archive is downloaded (and its MD5 checked) when the extracted folder is missing and a network is
there; otherwise the error says where to put the file. Images come back as uint8 tensors (N, 3, 32, 32).
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rigl_repro.errors import ConfigError


class DatasetMissingError(ConfigError):
    """The dataset is not on disk and could not be fetched."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_and_extract(root: Path, archive: str, url: str, md5: str) -> None:
    """Fetch ``url`` into ``root/archive`` unless present, check its MD5, and extract it into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / archive
    if not target.exists():
        partial = target.with_suffix(target.suffix + ".part")
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        partial.replace(target)
    actual = md5_of(target)
    if actual != md5:
        raise DatasetMissingError(
            f"{target} has MD5 {actual}, expected {md5} (dataset.md5): the file is corrupt or not the "
            "official archive; delete it and run again"
        )
    with tarfile.open(target, "r:gz") as tar:
        tar.extractall(root, filter="data")


def read_batches(folder: Path, files: Sequence[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the pickled batches ``files`` of an extracted CIFAR folder."""
    images, labels = [], []
    for name in files:
        with open(folder / name, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key.encode()], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_cifar(
    root: str | Path,
    folder: str,
    archive: str,
    url: str,
    md5: str,
    train_files: Sequence[str],
    test_files: Sequence[str],
    label_key: str,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train images, train labels, test images, test labels of an official CIFAR archive under ``root``."""
    root = Path(root)
    extracted = root / folder
    if not extracted.is_dir():
        if not download:
            raise DatasetMissingError(
                f"{extracted} does not exist and dataset.download=false; put {archive} (from {url}) "
                f"into {root}, or set dataset.root to the folder that holds it"
            )
        try:
            download_and_extract(root, archive, url, md5)
        except OSError as error:
            raise DatasetMissingError(
                f"{extracted} does not exist and {url} could not be downloaded ({error}); put {archive} "
                f"into {root} by hand (or set dataset.root=/path/to/folder) and run again"
            ) from None
    missing = [name for name in [*train_files, *test_files] if not (extracted / name).is_file()]
    if missing:
        raise DatasetMissingError(f"{extracted} lacks {', '.join(missing)}; delete the folder to extract again")
    return (*read_batches(extracted, train_files, label_key), *read_batches(extracted, test_files, label_key))
