"""Fashion-MNIST through torchvision: the data folder, then a folder of .gz files (Debian's package), then a
download; the extracted files checked against dataset.raw_md5; the real files when Debian's package is
installed (CI installs it)."""

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rigl_repro.data.cifar import DatasetMissingError
from rigl_repro.data.fashion_mnist import RAW_FILES, load_fashion_mnist
from rigl_repro.data.splits import load_splits
from tests.helpers import compose_config

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
OFFICIAL_MD5 = dict(compose_config("dataset=fashion_mnist").dataset.raw_md5)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: magic (0, 0, type 0x08 = ubyte, number of dimensions), the dimensions, the data."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def small_set(tmp_path):
    """A folder of the four .gz files, as Debian installs them, with 12 training and 5 test images."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5),
    }
    folder = tmp_path / "system"
    folder.mkdir()
    raw = {name: idx_bytes(array) for name, array in arrays.items()}
    for name, payload in raw.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
    md5 = {name: hashlib.md5(payload).hexdigest() for name, payload in raw.items()}
    return folder, arrays, md5


def test_the_gz_folder_is_extracted_into_torchvisions_layout_and_loaded(tmp_path, small_set):
    folder, arrays, md5 = small_set
    train_x, train_y, test_x, test_y = load_fashion_mnist(tmp_path / "data", str(folder), False, md5)
    assert all((tmp_path / "data" / "FashionMNIST" / "raw" / name).is_file() for name in RAW_FILES)
    assert train_x.shape == (12, 1, 28, 28) and train_x.dtype == torch.uint8 and test_x.shape == (5, 1, 28, 28)
    assert torch.equal(train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert torch.equal(test_y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"])) and test_y.dtype == torch.long
    again = load_fashion_mnist(tmp_path / "data", None, False, md5)  # the data folder comes first
    assert torch.equal(again[0], train_x)


def test_a_file_that_is_not_the_official_one_is_refused(tmp_path, small_set):
    folder, _, md5 = small_set
    wrong = {**md5, "train-images-idx3-ubyte": "0" * 32}
    with pytest.raises(DatasetMissingError, match=r"train-images-idx3-ubyte has MD5 .*expected 0+ \(dataset.raw_md5\)"):
        load_fashion_mnist(tmp_path / "data", str(folder), False, wrong)


def test_a_missing_set_is_downloaded_by_torchvision(tmp_path, small_set, local_server, monkeypatch):
    import torchvision.datasets

    folder, arrays, md5 = small_set
    for name in RAW_FILES:
        (local_server.directory / f"{name}.gz").write_bytes((folder / f"{name}.gz").read_bytes())
    resources = [(f"{name}.gz", hashlib.md5((folder / f"{name}.gz").read_bytes()).hexdigest()) for name in RAW_FILES]
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [local_server.url("")])
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "resources", resources)
    train_x, *_ = load_fashion_mnist(tmp_path / "data", str(tmp_path / "no-such-folder"), True, md5)
    assert torch.equal(train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))


def test_without_files_or_network_one_line_says_both_ways(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens
    with pytest.raises(DatasetMissingError) as refused:
        load_fashion_mnist(tmp_path / "data", str(tmp_path / "absent"), True, None)
    message = str(refused.value)
    assert "\n" not in message and "could not be downloaded" in message
    assert "apt-get install dataset-fashion-mnist" in message and "with a network" in message
    with pytest.raises(DatasetMissingError, match="dataset.download=false; apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "data", None, False, None)


def test_a_partly_extracted_folder_is_completed_from_the_gz_folder(tmp_path, small_set):
    folder, arrays, md5 = small_set
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"left over from an interrupted run")
    train_x, *_ = load_fashion_mnist(tmp_path / "data", str(folder), False, md5)
    assert torch.equal(train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))


def test_a_broken_gz_or_an_unwritable_root_is_one_line_and_leaves_nothing_behind(tmp_path, small_set):
    folder, _, md5 = small_set
    payload = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DatasetMissingError, match=r"train-images-idx3-ubyte.gz is not a complete gzip file"):
        load_fashion_mnist(tmp_path / "data", str(folder), False, md5)
    assert not [p for p in (tmp_path / "data" / "FashionMNIST" / "raw").iterdir() if p.name.startswith(".")]
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(DatasetMissingError, match=r"cannot write .*set dataset.root to a writable folder"):
        load_fashion_mnist(tmp_path / "a-file" / "data", str(folder), False, md5)


REAL_DATA = DEBIAN.is_dir() or os.environ.get("CI")  # CI installs the package: there the test must run


@pytest.mark.skipif(not REAL_DATA, reason="Debian's dataset-fashion-mnist is not installed (CI installs it)")
def test_the_real_fashion_mnist_from_debians_package(tmp_path):
    train_x, train_y, test_x, test_y = load_fashion_mnist(tmp_path / "data", str(DEBIAN), False, OFFICIAL_MD5)
    assert train_x.shape == (60_000, 1, 28, 28) and test_x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(train_y).tolist() == [6000] * 10 and torch.bincount(test_y).tolist() == [1000] * 10
    assert 0.28 < train_x.float().mean().item() / 255 < 0.29  # the usual per-pixel mean, 0.286
    dataset = OmegaConf.to_container(compose_config("dataset=fashion_mnist", f"dataset.root={tmp_path}/data").dataset)
    splits = load_splits(dataset, torch.device("cpu"))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55_000, 5_000, 10_000)
    assert torch.equal(splits.val.labels, train_y[55_000:])
