"""Lottery tickets (Frankle & Carbin 2018), as the report's Tables 2 and 3 use them.

The mask is that of a trained run: where ``trained_weights`` holds the run's masks (a checkpoint of this
project) and they have the per-layer counts of the layer-wise distribution, they are taken as they are;
otherwise each layer keeps its largest-magnitude trained weights at those counts. The weights are rewound
to the run's initial weights, and training proceeds with the mask fixed. The report's code takes the final
mask of its pruning run with the same density and seed (``lottery_ticket_init`` in
``sparselearning/funcs/init_scheme.py``), and the same seed gives it the same initial weights; the
``lottery`` variant points both files at that run. Both weight files are PyTorch state dicts (or checkpoints
holding one under ``"model"``), loaded without unpickling arbitrary objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity.masks import MASK_BUFFER, SparseLayer, top_k_mask
from rigl_repro.sparsity.methods.base import SparseMethod


def load_model_weights(path: str, option: str) -> dict[str, torch.Tensor]:
    """A model state dict from ``path`` (a bare state dict, or a checkpoint with a ``"model"`` entry)."""
    if not path:
        raise ConfigError(f"{option} is not set; give the path of a dense run's weights")
    if not Path(path).is_file():
        raise ConfigError(f"{option}={path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or unsafe file is the same problem for the user
        raise ConfigError(f"{option}={path!r} is not a readable weights file ({error.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError(f"{option}={path!r} does not hold a state dict")
    return state


@dataclass(kw_only=True, eq=False)
class LotteryTicket(SparseMethod):
    """Magnitude mask from ``trained_weights``, weights rewound to ``initial_weights``, static thereafter."""

    name = "lottery"
    trained_weights: str = ""
    initial_weights: str = ""

    def initial_masks(self, counts: Sequence[int]) -> list[torch.Tensor]:
        trained = load_model_weights(self.trained_weights, "masking.trained_weights")
        initial = load_model_weights(self.initial_weights, "masking.initial_weights")
        missing = [layer.name for layer in self.layers if layer.name not in trained]
        if missing:
            raise ConfigError(f"masking.trained_weights lacks weights of: {', '.join(missing)}")
        initial = {key: value for key, value in initial.items() if not key.endswith(".weight_mask")}
        incompatible = self.model.load_state_dict(initial, strict=False)
        absent = [key for key in incompatible.missing_keys if not key.endswith(".weight_mask")]
        if absent or incompatible.unexpected_keys:
            raise ConfigError(
                f"masking.initial_weights does not fit the model (missing: {absent[:5]}, "
                f"unexpected: {incompatible.unexpected_keys[:5]})"
            )
        return [self.trained_mask(trained, layer, count) for layer, count in zip(self.layers, counts)]

    @staticmethod
    def trained_mask(trained: dict[str, torch.Tensor], layer: SparseLayer, count: int) -> torch.Tensor:
        """The trained run's own mask of ``layer`` if it has ``count`` active weights, else the top-``count``
        trained magnitudes."""
        saved = trained.get(layer.name.removesuffix("weight") + MASK_BUFFER)
        if saved is not None and saved.dtype == torch.bool and saved.shape == layer.weight.shape:
            if int(saved.sum()) == count:
                return saved.to(layer.weight.device)
        return top_k_mask(trained[layer.name].to(layer.weight.device).abs(), count)
