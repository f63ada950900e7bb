"""Inference FLOPs of conv and linear layers, counted as in Evci et al. (2020) and the report's appendix.

A layer's FLOPs are 2 x its multiply-accumulates for one example; a sparse layer's are that times its
density. Only convolutions and linear layers are counted: normalisation, activations, residual additions,
pooling and biases are not (they are a fraction of a percent of a ResNet's FLOPs and do not change with
sparsity). With this rule WRN-22-2 on 32x32 inputs costs 3.1546e8 FLOPs per image and the CIFAR ResNet-50
2.5960e9.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity.masks import sparsifiable_weights


def layer_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Dense FLOPs per example of every sparsifiable weight (by parameter name), for inputs of
    ``input_shape`` (channels, height, width).

    The forward pass runs once on meta tensors substituted for every parameter and buffer, so it allocates
    nothing, touches no BatchNorm statistics, and works for a model on any device; the shape-recording
    hooks are removed before returning, whatever happens.
    """
    layers = sparsifiable_weights(model)
    flops: dict[str, int] = {}

    def recorder(name: str, module: nn.Module):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            per_output = module.weight[0].numel()  # in_channels / groups * kernel elements, or in_features
            flops[name] = 2 * (output[0].numel() if output.dim() > 1 else output.numel()) * per_output
        return hook

    handles = [module.register_forward_hook(recorder(name, module)) for name, (module, _) in layers.items()]
    try:
        meta_state = {
            name: torch.empty_like(tensor, device="meta")
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        }
        with torch.no_grad():
            functional_call(model, meta_state, (torch.empty(1, *input_shape, device="meta"),))
    except RuntimeError as error:  # the model does not take this dataset's images
        shape = "x".join(map(str, input_shape))
        raise ConfigError(
            f"the model ({type(model).__name__}) does not take the dataset's {shape} images "
            f"({str(error).splitlines()[0]}); choose a model for this dataset (model=...)"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    unused = sorted(set(layers) - set(flops))
    if unused:
        raise ValueError(f"these layers were not reached by a forward pass: {', '.join(unused)}")
    return {name: flops[name] for name in layers}


def inference_flops(flops: Mapping[str, int], densities: Mapping[str, float]) -> float:
    """FLOPs per example of the sparse network: sum over layers of dense FLOPs x density."""
    return sum(value * densities.get(name, 1.0) for name, value in flops.items())
