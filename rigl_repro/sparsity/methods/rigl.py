"""RigL (Evci et al. 2020): drop the smallest magnitudes, grow the largest dense-gradient magnitudes.

With ``redistribution: grad`` or ``momentum`` this is the report's RigL-SG / RigL-SM (section 6.2).
"""

from __future__ import annotations

import torch

from rigl_repro.sparsity.masks import SparseLayer
from rigl_repro.sparsity.methods.drop_and_grow import DropAndGrow


class RigL(DropAndGrow):
    """Gradient growth from the dense gradient of the update step's batch (report, "Growth Strategy")."""

    name = "rigl"
    dense_gradients = "update_steps"

    def grow_scores(self, layer: SparseLayer) -> torch.Tensor:
        grad = layer.weight.grad
        return torch.zeros_like(layer.weight) if grad is None else grad.abs()
