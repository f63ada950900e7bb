"""Dense training: no masks; the engine only steps the optimizer."""

from __future__ import annotations

from rigl_repro.sparsity.methods.base import SparseMethod


class Dense(SparseMethod):
    """The dense baseline: every weight trains, nothing is masked."""

    name = "dense"
    masked = False
