"""Static sparse training: a random mask drawn once at the layer-wise distribution, never changed."""

from __future__ import annotations

from dataclasses import dataclass

from rigl_repro.sparsity.methods.base import LayerwiseDistribution


@dataclass(kw_only=True, eq=False)
class Static(LayerwiseDistribution):
    """Fixed random topology (the report's "Static" rows)."""

    name = "static"
