"""Dense training: no masks; the engine only steps the optimizer."""

from __future__ import annotations

from dataclasses import dataclass

from rigl_repro.sparsity.methods.base import TargetDensity


@dataclass(kw_only=True, eq=False)
class Dense(TargetDensity):
    """The dense baseline: every weight trains, nothing is masked.

    It reads no option. It takes ``density`` all the same: the experiment grids file dense runs under
    ``masking.density=1.0`` (their run folders and table cells), and the demo sets one density for all its
    methods.
    """

    name = "dense"
    masked = False
