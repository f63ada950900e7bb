"""Datasets (CIFAR-10/100 from the official archives, the embedded digits), their splits, and batch
augmentation on the training device."""

from rigl_repro.data.augment import normalise, random_crop_flip
from rigl_repro.data.splits import DataSplits, Split, load_splits

__all__ = ["DataSplits", "Split", "load_splits", "normalise", "random_crop_flip"]
