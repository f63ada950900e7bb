"""Datasets (CIFAR-10/100 and Fashion-MNIST through torchvision, the embedded digits), their splits, and batch
augmentation on the training device."""

from rigl_repro.data.augment import AUGMENTATIONS, augment_batch, normalise, random_crop_flip
from rigl_repro.data.splits import DataSplits, Split, load_splits

__all__ = ["AUGMENTATIONS", "DataSplits", "Split", "augment_batch", "load_splits", "normalise", "random_crop_flip"]
