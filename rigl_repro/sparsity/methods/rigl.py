"""RigL (Evci et al. 2020): drop the smallest magnitudes, grow the largest dense-gradient magnitudes.

With ``redistribution: grad`` or ``momentum`` this is the report's RigL-SG / RigL-SM (section 6.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity.masks import SparseLayer
from rigl_repro.sparsity.methods.drop_and_grow import DropAndGrow


class RigL(DropAndGrow):
    """Gradient growth from the dense gradient of the update step's batch (report, "Growth Strategy")."""

    name = "rigl"
    dense_gradients = "update_steps"

    def grow_scores(self, layer: SparseLayer) -> torch.Tensor:
        grad = layer.weight.grad
        return torch.zeros_like(layer.weight) if grad is None else grad.abs()


@dataclass(kw_only=True, eq=False)
class RigLSG(RigL):
    """RigL-SG (report, 6.2): RigL whose per-layer drop and grow counts are redistributed by each layer's mean
    sparse gradient; the same run as ``rigl`` with ``redistribution: grad`` (``conf/masking/rigl_sg.yaml``)."""

    name = "rigl_sg"
    variant_of: ClassVar[str] = "rigl"
    redistribution: str = "grad"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_variant(self, "grad")


@dataclass(kw_only=True, eq=False)
class RigLSM(RigL):
    """RigL-SM (report, 6.2): RigL with its counts redistributed by each layer's mean momentum; the same run
    as ``rigl`` with ``redistribution: momentum`` (``conf/masking/rigl_sm.yaml``)."""

    name = "rigl_sm"
    variant_of: ClassVar[str] = "rigl"
    redistribution: str = "momentum"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_variant(self, "momentum")


def require_variant(method: RigL, redistribution: str) -> None:
    """Refuse a redistribution that contradicts the variant's name, in one line."""
    if method.redistribution != redistribution:
        raise ConfigError(
            f"masking.redistribution={method.redistribution!r} contradicts method {method.name!r}, which is RigL "
            f"with redistribution {redistribution!r}; use method 'rigl' for another redistribution"
        )
