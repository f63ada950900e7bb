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


class RigLPreset(RigL):
    """RigL with its redistribution fixed by the preset's name; another redistribution is refused."""

    name = ""  # not a method of its own: its subclasses are
    variant_of: ClassVar[str] = "rigl"

    def __post_init__(self) -> None:
        super().__post_init__()
        preset = type(self).__dataclass_fields__["redistribution"].default
        if self.redistribution != preset:
            raise ConfigError(
                f"masking.redistribution={self.redistribution!r} contradicts method {self.name!r}, which is RigL "
                f"with redistribution {preset!r}; use method 'rigl' for another redistribution"
            )


@dataclass(kw_only=True, eq=False)
class RigLSG(RigLPreset):
    """RigL-SG (report, 6.2): RigL whose per-layer drop and grow counts are redistributed by each layer's mean
    sparse gradient; the same run as ``rigl`` with ``redistribution: grad`` (``conf/masking/rigl_sg.yaml``)."""

    name = "rigl_sg"
    redistribution: str = "grad"


@dataclass(kw_only=True, eq=False)
class RigLSM(RigLPreset):
    """RigL-SM (report, 6.2): RigL with its counts redistributed by each layer's mean momentum; the same run
    as ``rigl`` with ``redistribution: momentum`` (``conf/masking/rigl_sm.yaml``)."""

    name = "rigl_sm"
    redistribution: str = "momentum"
