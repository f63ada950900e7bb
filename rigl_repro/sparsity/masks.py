"""Boolean masks on the weights of conv and linear layers, and exact top-k selection.

Masks are registered on each layer as a boolean buffer named ``weight_mask`` so that they travel with the
model's ``state_dict``: a checkpoint restores the topology exactly. A mask is never rebuilt from non-zero
weights (RigL grows weights at exactly zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MASK_BUFFER = "weight_mask"
SPARSIFIABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(eq=False)
class SparseLayer:
    """One masked weight: its parameter, its mask, and its exact count of active weights (kept on the host
    so that schedules never read it back from the device)."""

    name: str
    module: nn.Module
    weight: nn.Parameter
    mask: torch.Tensor
    n_active: int

    @property
    def size(self) -> int:
        return self.weight.numel()

    @property
    def density(self) -> float:
        return self.n_active / self.size


def sparsifiable_weights(model: nn.Module) -> dict[str, tuple[nn.Module, nn.Parameter]]:
    """The weights that masks cover, by parameter name, in module order: conv and linear weights only.

    Biases and normalisation layers stay dense (report, section 3).
    """
    return {
        f"{module_name}.weight" if module_name else "weight": (module, module.weight)
        for module_name, module in model.named_modules()
        if isinstance(module, SPARSIFIABLE)
    }


def weight_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Shapes of the sparsifiable weights, the input of every distribution function."""
    return {name: tuple(weight.shape) for name, (_, weight) in sparsifiable_weights(model).items()}


def attach_masks(model: nn.Module) -> list[SparseLayer]:
    """Register an all-true ``weight_mask`` buffer on every sparsifiable layer and return the layers."""
    layers = []
    for name, (module, weight) in sparsifiable_weights(model).items():
        if not hasattr(module, MASK_BUFFER):
            module.register_buffer(MASK_BUFFER, torch.ones_like(weight, dtype=torch.bool))
        layers.append(SparseLayer(name, module, weight, getattr(module, MASK_BUFFER), weight.numel()))
    return layers


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest ``scores``; among equal scores the lower flat index wins.

    A stable descending sort makes the choice deterministic on every device, ties included.
    """
    flat = scores.reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    mask[order] = True
    return mask.view_as(scores)


def random_mask(shape: torch.Size, k: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A mask with exactly ``k`` true entries at uniformly random positions (not Bernoulli sampling)."""
    size = math.prod(shape)
    order = torch.randperm(size, generator=generator, device=generator.device)[:k].to(device)
    mask = torch.zeros(size, dtype=torch.bool, device=device)
    mask[order] = True
    return mask.view(shape)


def excluding(mask: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``scores`` where ``mask`` is false and -inf where it is true, so a top-k never picks masked entries."""
    return scores.float().masked_fill(mask, float("-inf"))


def restricted_to(mask: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``scores`` where ``mask`` is true and -inf elsewhere."""
    return scores.float().masked_fill(~mask, float("-inf"))
