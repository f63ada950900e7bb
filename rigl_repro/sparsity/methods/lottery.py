"""Lottery tickets (Frankle & Carbin 2018), as the report's Tables 2 and 3 use them.

The mask is that of a trained run: where ``trained_weights`` holds the run's masks (a checkpoint of this
project) and they have the per-layer counts of the layer-wise distribution, they are taken as they are;
otherwise each layer keeps its largest-magnitude trained weights at those counts. The weights are rewound
to the run's initial weights, and training proceeds with the mask fixed. The report's code takes the final
mask of its pruning run with the same density and seed (``lottery_ticket_init`` in
``sparselearning/funcs/init_scheme.py``), and the same seed gives it the same initial weights; the
``lottery`` variant points both files at that run. Both weight files are PyTorch state dicts (or checkpoints
holding one under ``"model"``), loaded without unpickling arbitrary objects, and refused in one line naming the
file when they are another model's (a tensor of another shape) or hold a mask that is not boolean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity.masks import SparseLayer
from rigl_repro.sparsity.methods.base import (
    LayerwiseDistribution,
    SavedWeights,
    load_model_weights,
    require_fit,
    saved_mask,
)


@dataclass(kw_only=True, eq=False)
class LotteryTicket(LayerwiseDistribution):
    """Magnitude mask from ``trained_weights``, weights rewound to ``initial_weights``, static thereafter."""

    name = "lottery"
    trained_weights: str = ""
    initial_weights: str = ""

    def initial_masks(self, counts: Sequence[int]) -> list[torch.Tensor]:
        trained = load_model_weights(self.trained_weights, "masking.trained_weights")
        initial = load_model_weights(self.initial_weights, "masking.initial_weights")
        own = self.model.state_dict()
        require_fit(trained, own)
        require_fit(initial, own)
        missing = [layer.name for layer in self.layers if layer.name not in trained]
        if missing:
            raise ConfigError(f"{trained.source} lacks weights of: {', '.join(missing)}")
        incompatible = self.model.load_state_dict(
            {key: value for key, value in initial.items() if not key.endswith(".weight_mask")}, strict=False
        )
        absent = [key for key in incompatible.missing_keys if not key.endswith(".weight_mask")]
        if absent or incompatible.unexpected_keys:
            raise ConfigError(
                f"{initial.source} does not fit the model (missing: {absent[:5]}, "
                f"unexpected: {incompatible.unexpected_keys[:5]})"
            )
        return [self.trained_mask(trained, layer, count) for layer, count in zip(self.layers, counts)]

    def trained_mask(self, trained: SavedWeights, layer: SparseLayer, count: int) -> torch.Tensor:
        """The trained run's own mask of ``layer`` if it has ``count`` active weights and the structure, else
        the top-``count`` trained magnitudes under the structure."""
        saved = saved_mask(trained, layer)
        if saved is not None and int(saved.sum()) == count and self.mask_structure.violation(saved) is None:
            return saved.to(layer.weight.device)
        if count == layer.size:
            return torch.ones_like(layer.mask)
        return self.mask_structure.keep(trained[layer.name].to(layer.weight.device).abs(), count)
