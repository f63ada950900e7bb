"""The CIFAR loaders through torchvision's dataset classes, on small archives in the official layout that the
tests make (torchvision's checksums patched to theirs), fetched through the real download path."""

import numpy as np
import pytest
import torch

from rigl_repro.data.cifar import DatasetMissingError, load_cifar
from rigl_repro.data.splits import load_splits
from rigl_repro.errors import ConfigError
from tests.helpers import fake_cifar


def cifar10_batches(seed=0, per_file=20, test=10):
    rng = np.random.default_rng(seed)
    counts = [*[(f"data_batch_{i}", per_file) for i in range(1, 6)], ("test_batch", test)]
    return {name: (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)) for name, n in counts}


@pytest.fixture
def cifar10_archive(local_server, monkeypatch):
    batches = cifar10_batches()
    return fake_cifar(monkeypatch, local_server, "cifar10", batches), batches


def test_download_checks_extracts_and_loads_every_image(tmp_path, cifar10_archive):
    archive, batches = cifar10_archive
    train_x, train_y, test_x, test_y = load_cifar(tmp_path / "data", "cifar10")
    assert (tmp_path / "data" / archive.name).is_file() and (tmp_path / "data" / "cifar-10-batches-py").is_dir()
    assert train_x.shape == (100, 3, 32, 32) and train_x.dtype == torch.uint8 and test_x.shape == (10, 3, 32, 32)
    assert torch.equal(train_x[:20], torch.from_numpy(batches["data_batch_1"][0]))
    assert torch.equal(test_y, torch.from_numpy(batches["test_batch"][1])) and train_y.dtype == torch.long
    (tmp_path / "data" / archive.name).unlink()  # the extracted folder is read without the archive or network
    again = load_cifar(tmp_path / "data", "cifar10", download=False)
    assert torch.equal(again[0], train_x)


def test_a_corrupt_file_is_refused(tmp_path, cifar10_archive):
    load_cifar(tmp_path / "data", "cifar10")
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(DatasetMissingError, match=r"cifar10 is not in .* \(Dataset not found or corrupted"):
        load_cifar(tmp_path / "data", "cifar10", download=False)


def test_missing_data_without_network_says_where_to_put_it(tmp_path, cifar10_archive, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # closed
    root = tmp_path / "empty"
    refused = r"could not be downloaded \(.*Connection refused.*\); put cifar-10-batches-py.tar.gz \(http://127.0.0.1:9/"
    with pytest.raises(DatasetMissingError, match=refused):
        load_cifar(root, "cifar10")
    with pytest.raises(DatasetMissingError, match=r"dataset.download=false"):
        load_cifar(root, "cifar10", download=False)


def test_cifar100_uses_fine_labels(tmp_path, monkeypatch, local_server):
    rng = np.random.default_rng(1)
    batches = {name: (rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8), rng.integers(0, 100, 8))
               for name in ("train", "test")}  # fmt: skip
    fake_cifar(monkeypatch, local_server, "cifar100", batches)
    train_x, train_y, _, _ = load_cifar(tmp_path / "data", "cifar100")
    assert torch.equal(train_y, torch.from_numpy(batches["train"][1]))
    assert (tmp_path / "data" / "cifar-100-python").is_dir()


def split_options(tmp_path, val_split):
    """A whole ``dataset`` config for the generated archive: 100 training images, 10 held out."""
    return {
        "source": "cifar10", "root": tmp_path / "data", "download": True, "train_pool": 100, "val_size": 10,
        "val_split": val_split, "split_seed": 0, "augment": "reflect_crop_flip",
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "channels": 3, "image_size": 32, "num_classes": 10,
    }  # fmt: skip


def test_validation_split_is_fixed_disjoint_and_optional(tmp_path, cifar10_archive):
    dataset = split_options(tmp_path, "random")
    first, again = load_splits(dataset, torch.device("cpu")), load_splits(dataset, torch.device("cpu"))
    assert (len(first.train), len(first.val), len(first.test)) == (90, 10, 10)
    assert torch.equal(first.val.images, again.val.images)
    train_rows = {bytes(image.numpy()) for image in first.train.images}
    assert not any(bytes(image.numpy()) in train_rows for image in first.val.images)
    everything = load_splits({**dataset, "val_size": 0}, torch.device("cpu"))
    assert everything.val is None and len(everything.train) == 100


def test_the_report_codes_validation_split_is_the_last_images_in_file_order(tmp_path, cifar10_archive):
    dataset = split_options(tmp_path, "last")
    splits = load_splits(dataset, torch.device("cpu"))
    everything = load_splits({**dataset, "val_size": 0}, torch.device("cpu"))
    assert torch.equal(splits.val.images, everything.train.images[90:])
    assert torch.equal(splits.train.images, everything.train.images[:90])
    with pytest.raises(ConfigError, match="dataset.val_split='first' is not known; choose one of: last, random"):
        load_splits({**dataset, "val_split": "first"}, torch.device("cpu"))
