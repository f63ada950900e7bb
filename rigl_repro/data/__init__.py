"""Datasets (CIFAR-10/100 and Fashion-MNIST through torchvision, the embedded digits, synthetic images), their
splits, and batch augmentation on the training device.

Datasets are a registry, as sparse-training methods are: each source is one module of this package that
decorates its loader with ``@register_source(name, ..., location_options=..., validate=...)``
(``rigl_repro.data.registry``). The loader takes the ``dataset`` config and returns the raw uint8 train and
test tensors; ``load_splits`` checks the options common to all, dispatches on ``dataset.source`` and holds
out the validation set. Every module here is imported below, so a new dataset is one module plus one
``conf/dataset/*.yaml`` (which also names its model and training recipe in its defaults list).
"""

from __future__ import annotations

import importlib
import pkgutil

from rigl_repro.data.augment import AUGMENTATIONS, augment_batch, normalise, random_crop_flip
from rigl_repro.data.registry import (
    STANDARD_LOCATION_OPTIONS,
    RawData,
    Source,
    available_sources,
    get_source,
    location_options,
    register_source,
)
from rigl_repro.data.splits import DataSplits, Split, load_splits

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AUGMENTATIONS",
    "STANDARD_LOCATION_OPTIONS",
    "DataSplits",
    "RawData",
    "Source",
    "Split",
    "augment_batch",
    "available_sources",
    "get_source",
    "load_splits",
    "location_options",
    "normalise",
    "random_crop_flip",
    "register_source",
]
