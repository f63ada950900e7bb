"""Fashion-MNIST (Xiao et al. 2017) through ``torchvision.datasets.FashionMNIST``: 60,000 training and
10,000 test images, 28x28 grey, 10 classes.

torchvision reads the extracted IDX files in ``<root>/FashionMNIST/raw``. When they are missing they come
from, in this order: a folder of the four ``.gz`` files (``dataset.system_root``, by default where Debian's
``dataset-fashion-mnist`` package installs them), then torchvision's download. Debian re-compressed the
files, so their ``.gz`` checksums are not torchvision's; the extracted files are checked against
``dataset.raw_md5`` instead, whichever way they came.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch

from rigl_repro.data.cifar import DatasetMissingError, as_tensors, network_timeout
from rigl_repro.data.registry import RawData, register_source

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
HOW = "apt-get install dataset-fashion-mnist (Debian), or run once with a network (torchvision downloads it)"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive: Path, target: Path) -> None:
    """Decompress ``archive`` into ``target`` atomically, readable by all as a downloaded file would be: a
    half-written file is never left behind, and a broken archive stops with one line."""
    temporary = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as out:
            temporary = Path(out.name)
            with gzip.open(archive, "rb") as source:
                shutil.copyfileobj(source, out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DatasetMissingError(
            f"{archive} is not a complete gzip file ({error.__class__.__name__}); reinstall it "
            "(apt-get install --reinstall dataset-fashion-mnist) or set dataset.system_root=null to download"
        ) from None
    except OSError as error:
        raise DatasetMissingError(
            f"cannot write {target.parent} ({error.strerror or error}); set dataset.root to a writable folder"
        ) from None
    finally:
        if temporary is not None and temporary.exists():
            temporary.unlink()


def fetch(root: Path, system_root: str | None, download: bool) -> str:
    """Put the four raw files in ``root/FashionMNIST/raw``; returns where they came from."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / name).is_file() for name in RAW_FILES):
        return str(raw)
    system = Path(system_root) if system_root else None
    if system is not None and all((system / f"{name}.gz").is_file() for name in RAW_FILES):
        for name in RAW_FILES:
            extract(system / f"{name}.gz", raw / name)
        return str(system)
    if not download:
        raise DatasetMissingError(f"Fashion-MNIST is not in {raw} and dataset.download=false; {HOW}")
    import torchvision.datasets

    try:
        with network_timeout():
            torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    except (RuntimeError, URLError, OSError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else error.__class__.__name__
        where = f"{system}" if system is not None else "dataset.system_root"
        raise DatasetMissingError(
            f"Fashion-MNIST is neither in {raw} nor in {where}, and could not be downloaded ({reason}); {HOW}"
        ) from None
    return "download"


def load_fashion_mnist(
    root: str | Path, system_root: str | None, download: bool, raw_md5: Mapping[str, str] | None
) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels as uint8 (N, 1, 28, 28) and int64 tensors."""
    import torchvision.datasets

    root = Path(root)
    source = fetch(root, system_root, download)
    raw = root / "FashionMNIST" / "raw"
    try:
        for name, expected in (raw_md5 or {}).items():
            actual = md5_of(raw / name)
            if actual != expected:
                raise DatasetMissingError(
                    f"{raw / name} has MD5 {actual}, expected {expected} (dataset.raw_md5): it is not the official "
                    f"file (it came from {source}); delete {raw} and get the files another way: {HOW}"
                )
        train = torchvision.datasets.FashionMNIST(str(root), train=True)
        test = torchvision.datasets.FashionMNIST(str(root), train=False)
    except (OSError, RuntimeError) as error:
        raise DatasetMissingError(f"cannot read Fashion-MNIST in {raw} ({error}); delete the folder and run again")
    return (*as_tensors(train.data, train.targets), *as_tensors(test.data, test.targets))


@register_source("fashion_mnist", location_options=("root", "system_root", "download", "raw_md5"))
def load_fashion_mnist_source(cfg: Mapping[str, Any]) -> RawData:
    """``dataset.source=fashion_mnist``: from ``dataset.root``, else ``dataset.system_root``, else downloaded
    if ``dataset.download``; checked against ``dataset.raw_md5``."""
    return load_fashion_mnist(cfg["root"], cfg["system_root"], cfg["download"], cfg["raw_md5"])
