"""SET (Mocanu et al. 2018): drop the smallest magnitudes, grow uniformly at random."""

from __future__ import annotations

import torch

from rigl_repro.sparsity.masks import SparseLayer
from rigl_repro.sparsity.methods.drop_and_grow import DropAndGrow


class SET(DropAndGrow):
    """Random growth: i.i.d. uniform scores, so the top-k among inactive positions is a uniform draw."""

    name = "set"

    def grow_scores(self, layer: SparseLayer) -> torch.Tensor:
        return torch.rand(layer.weight.shape, generator=self.generator, device=self.generator.device).to(
            layer.weight.device
        )
