"""Static sparse training: a random mask drawn once at the layer-wise distribution, never changed."""

from __future__ import annotations

from rigl_repro.sparsity.methods.base import SparseMethod


class Static(SparseMethod):
    """Fixed random topology (the report's "Static" rows)."""

    name = "static"
