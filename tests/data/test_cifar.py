"""The CIFAR loader on small archives in the official python-pickle format, made by the tests."""

import numpy as np
import pytest
import torch

from rigl_repro.data.cifar import DatasetMissingError, load_cifar, md5_of
from rigl_repro.data.splits import load_splits
from rigl_repro.errors import ConfigError
from tests.helpers import write_archive

CIFAR10_FILES = {"train_files": [f"data_batch_{i}" for i in range(1, 6)], "test_files": ["test_batch"]}


@pytest.fixture
def cifar10_archive(tmp_path):
    rng = np.random.default_rng(0)
    batches = {
        name: (rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, count))
        for name, count in [*[(f"data_batch_{i}", 20) for i in range(1, 6)], ("test_batch", 10)]
    }
    source = tmp_path / "mirror"
    source.mkdir()
    archive = source / "cifar-10-python.tar.gz"
    write_archive(archive, "cifar-10-batches-py", batches, "labels")
    return archive, batches


def cifar10_options(root, archive, **overrides):
    options = {
        "root": root,
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "url": archive.as_uri(),
        "md5": md5_of(archive),
        "label_key": "labels",
        "download": True,
        **CIFAR10_FILES,
    }
    return {**options, **overrides}


def test_download_checks_the_checksum_extracts_and_loads_every_image(tmp_path, cifar10_archive):
    archive, batches = cifar10_archive
    train_x, train_y, test_x, test_y = load_cifar(**cifar10_options(tmp_path / "data", archive))
    assert (tmp_path / "data" / "cifar-10-python.tar.gz").is_file()
    assert train_x.shape == (100, 3, 32, 32) and train_x.dtype == torch.uint8 and test_x.shape == (10, 3, 32, 32)
    assert torch.equal(train_x[:20], torch.from_numpy(batches["data_batch_1"][0]))
    assert torch.equal(test_y, torch.from_numpy(batches["test_batch"][1]))
    # Extracted data is read without the network from then on.
    again = load_cifar(**cifar10_options(tmp_path / "data", archive, url="file:///nowhere", download=False))
    assert torch.equal(again[0], train_x)


def test_a_corrupt_download_is_refused_with_the_option_to_check(tmp_path, cifar10_archive):
    archive, _ = cifar10_archive
    with pytest.raises(DatasetMissingError, match=r"expected 0+ \(dataset.md5\)"):
        load_cifar(**cifar10_options(tmp_path / "data", archive, md5="0" * 32))


def test_missing_data_without_network_says_where_to_put_the_archive(tmp_path, cifar10_archive):
    archive, _ = cifar10_archive
    root = tmp_path / "empty"
    with pytest.raises(DatasetMissingError, match=r"could not be downloaded .*put cifar-10-python.tar.gz into"):
        load_cifar(**cifar10_options(root, archive, url=(tmp_path / "absent.tar.gz").as_uri()))
    with pytest.raises(DatasetMissingError, match=r"dataset.download=false; put cifar-10-python.tar.gz"):
        load_cifar(**cifar10_options(root, archive, download=False))


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    images = {name: rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8) for name in ("train", "test")}
    batches = {name: (data, rng.integers(0, 100, 8)) for name, data in images.items()}
    archive = tmp_path / "cifar-100-python.tar.gz"
    write_archive(archive, "cifar-100-python", batches, "fine_labels")
    train_x, train_y, _, _ = load_cifar(
        tmp_path / "data", "cifar-100-python", archive.name, archive.as_uri(), md5_of(archive),
        ["train"], ["test"], "fine_labels",
    )  # fmt: skip
    assert torch.equal(train_y, torch.from_numpy(batches["train"][1]))


def split_options(tmp_path, archive, val_split):
    """A whole ``dataset`` config for the generated archive: 100 training images, 10 held out."""
    return {
        **cifar10_options(tmp_path / "data", archive),
        "source": "cifar", "train_pool": 100, "val_size": 10, "val_split": val_split, "split_seed": 0,
        "augment": "reflect_crop_flip", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
    }  # fmt: skip


def test_validation_split_is_fixed_disjoint_and_optional(tmp_path, cifar10_archive):
    dataset = split_options(tmp_path, cifar10_archive[0], "random")
    first, again = load_splits(dataset, torch.device("cpu")), load_splits(dataset, torch.device("cpu"))
    assert (len(first.train), len(first.val), len(first.test)) == (90, 10, 10)
    assert torch.equal(first.val.images, again.val.images)
    train_rows = {bytes(image.numpy()) for image in first.train.images}
    assert not any(bytes(image.numpy()) in train_rows for image in first.val.images)
    everything = load_splits({**dataset, "val_size": 0}, torch.device("cpu"))
    assert everything.val is None and len(everything.train) == 100


def test_the_report_codes_validation_split_is_the_last_images_in_file_order(tmp_path, cifar10_archive):
    dataset = split_options(tmp_path, cifar10_archive[0], "last")
    splits = load_splits(dataset, torch.device("cpu"))
    everything = load_splits({**dataset, "val_size": 0}, torch.device("cpu"))
    assert torch.equal(splits.val.images, everything.train.images[90:])
    assert torch.equal(splits.train.images, everything.train.images[:90])
    with pytest.raises(ConfigError, match="dataset.val_split='first' is not known; choose one of: last, random"):
        load_splits({**dataset, "val_split": "first"}, torch.device("cpu"))
