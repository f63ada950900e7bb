"""Put a dataset where runs read it, and print its splits; the same Hydra config as main.py.

    python scripts/fetch_data.py dataset=fashion_mnist      # dataset.root, else Debian's package, else download
    python scripts/fetch_data.py dataset=cifar10 dataset.root=/data

Exits 2 with one line saying how to get the data when it cannot be had (``make demo`` runs this first).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import torch  # noqa: E402

from rigl_repro.config import compose_config  # noqa: E402
from rigl_repro.data import load_splits  # noqa: E402
from rigl_repro.errors import ConfigError  # noqa: E402


def main(overrides: list[str]) -> None:
    if {"-h", "--help"} & set(overrides):
        print(__doc__)
        return
    try:
        dataset = OmegaConf.to_container(compose_config(overrides).dataset, resolve=True)
        splits = load_splits(dataset, torch.device("cpu"))
    except (ConfigError, HydraException) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sizes = f"{len(splits.train)} train, {0 if splits.val is None else len(splits.val)} val, {len(splits.test)} test"
    print(f"{dataset['name']}: {sizes} images of shape {tuple(splits.train.images.shape[1:])}")


if __name__ == "__main__":
    main(sys.argv[1:])
