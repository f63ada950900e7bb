"""Sparse training: layer-wise distributions, masks, update methods and their schedules."""

from rigl_repro.sparsity.engine import SparseEngine
from rigl_repro.sparsity.methods import available_methods, build_method

__all__ = ["SparseEngine", "available_methods", "build_method"]
