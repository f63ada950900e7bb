"""What both framework callbacks' tests share."""

import torch
from torch import nn

RIGL = {"name": "rigl", "density": 0.2, "distribution": "erk", "delta_t": 5, "alpha": 0.3}


def short_run_options(method: str) -> dict:
    """``method`` at density 0.2 (ERK), updating every 5 steps (pruning: every 2, over 10-50% of the run), so
    that a 32-step run changes its topology."""
    if method == "pruning":
        return {"name": "pruning", "density": 0.2, "delta_t": 2, "start_fraction": 0.1, "end_fraction": 0.5}
    options = {"name": method, "density": 0.2, "distribution": "erk"}
    if method != "static":
        options["delta_t"] = 5
    return options


def masked_layers(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, mask) of every masked layer."""
    return [(layer.weight, layer.weight_mask) for layer in module.modules() if hasattr(layer, "weight_mask")]
