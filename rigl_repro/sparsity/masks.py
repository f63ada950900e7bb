"""Boolean masks on a model's weight matrices, which of them masks cover, and exact top-k selection.

A mask is registered on the module that owns its weight as a boolean buffer named after the weight with
``_mask`` appended (``weight_mask``, ``in_proj_weight_mask``), so that it travels with the model's
``state_dict``: a checkpoint restores the topology exactly. A mask is never rebuilt from non-zero weights
(RigL grows weights at exactly zero).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rigl_repro.errors import ConfigError

MASK_BUFFER = "weight_mask"
# Every masked parameter's name ends in "weight", so its mask's ends in MASK_BUFFER: checkpoints and exports
# pair the two by that suffix.
MASKABLE_SUFFIX = "weight"
# The module types whose weight matrices masks cover by default. The report's models hold only Conv2d and
# Linear layers, so their masks are what they were before Embedding and MultiheadAttention joined the list.
SPARSE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.MultiheadAttention,
)  # fmt: skip
# MultiheadAttention's input projections are parameters of its own (one packed matrix, or three when the key
# and value widths differ); its output projection is a Linear submodule, covered as a Linear.
ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
SPARSIFIABLE = SPARSE_MODULES  # the name earlier code imported


def own_weights(module: nn.Module) -> list[str]:
    """The names, on ``module`` itself, of the weight matrices a module of its type has (none for a type
    masks do not cover by default)."""
    if isinstance(module, nn.MultiheadAttention):
        return [name for name in ATTENTION_WEIGHTS if getattr(module, name, None) is not None]
    if isinstance(module, SPARSE_MODULES) and isinstance(getattr(module, "weight", None), nn.Parameter):
        return ["weight"]
    return []


@dataclass(frozen=True)
class MaskPolicy:
    """Which of a model's parameters take part in sparse training.

    By default every weight matrix of the module types in ``modules`` (``SPARSE_MODULES``: Linear, Conv1d/2d/3d,
    Embedding, MultiheadAttention's input and output projections); biases and normalisation layers stay dense.
    ``include``: parameter-name patterns (``fnmatch``, e.g. ``"head.*"``) masked whatever their module;
    ``exclude``: parameter-name patterns or module types (a type excludes its submodules' weights too, so
    excluding ``nn.MultiheadAttention`` keeps its output projection dense) left dense. A masked parameter's
    name must end in ``weight``.
    """

    modules: tuple[type[nn.Module], ...] = SPARSE_MODULES
    include: tuple[str, ...] = ()
    exclude: tuple[str | type[nn.Module], ...] = ()

    def select(self, model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
        """The masked parameters of ``model``: full name -> (owning module, its name there), in module order
        (the order the report's models had before this policy existed)."""
        excluded_types = tuple(item for item in self.exclude if isinstance(item, type))
        patterns = [item for item in self.exclude if isinstance(item, str)]
        skipped: set[str] = set()  # modules under an excluded type
        chosen: dict[str, tuple[nn.Module, str]] = {}
        for module_name, module in model.named_modules():
            prefix = f"{module_name}." if module_name else ""
            parent = module_name.rpartition(".")[0] if "." in module_name else ("" if module_name else None)
            if (parent is not None and parent in skipped) or (excluded_types and isinstance(module, excluded_types)):
                skipped.add(module_name)
                continue
            local = own_weights(module) if isinstance(module, self.modules) else []
            extra = [name for name, _ in module.named_parameters(recurse=False)
                     if name not in local and any(fnmatch.fnmatchcase(prefix + name, p) for p in self.include)]
            for name in [*local, *extra]:
                full = prefix + name
                if any(fnmatch.fnmatchcase(full, pattern) for pattern in patterns):
                    continue
                if not name.endswith(MASKABLE_SUFFIX):
                    raise ConfigError(f"mask policy: {full} matches an include pattern, but masks cover weights only "
                                      f"(parameter names ending in {MASKABLE_SUFFIX!r})")  # fmt: skip
                if isinstance(module, nn.Embedding) and module.sparse:
                    raise ConfigError(f"{full}: an Embedding with sparse=True has sparse gradients, which masks "
                                      "cannot multiply; build it with sparse=False or exclude it")  # fmt: skip
                chosen[full] = (module, name)
        return chosen

    @classmethod
    def of(cls, include: Sequence[str] = (), exclude: Sequence[str | type[nn.Module]] = (),
           modules: Sequence[type[nn.Module]] = SPARSE_MODULES) -> MaskPolicy:  # fmt: skip
        """A policy from lists (config files and users write lists; the policy keeps tuples, so it hashes)."""
        return cls(tuple(modules), tuple(include), tuple(exclude))


DEFAULT_POLICY = MaskPolicy()


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


def sparsifiable_weights(
    model: nn.Module, policy: MaskPolicy = DEFAULT_POLICY
) -> dict[str, tuple[nn.Module, nn.Parameter]]:
    """The weights that masks cover under ``policy``, by parameter name, in module order.

    Biases and normalisation layers stay dense (report, section 3).
    """
    return {name: (module, getattr(module, local)) for name, (module, local) in policy.select(model).items()}


def weight_shapes(model: nn.Module, policy: MaskPolicy = DEFAULT_POLICY) -> dict[str, tuple[int, ...]]:
    """Shapes of the sparsifiable weights, the input of every distribution function."""
    return {name: tuple(weight.shape) for name, (_, weight) in sparsifiable_weights(model, policy).items()}


def attach_masks(model: nn.Module, policy: MaskPolicy = DEFAULT_POLICY) -> list[SparseLayer]:
    """Register an all-true ``<weight>_mask`` buffer beside every weight ``policy`` covers (keeping one that is
    there) and return the layers."""
    layers = []
    for name, (module, local) in policy.select(model).items():
        weight, buffer = getattr(module, local), f"{local}_mask"
        if not hasattr(module, buffer):
            module.register_buffer(buffer, torch.ones_like(weight, dtype=torch.bool))
        layers.append(SparseLayer(name, module, weight, getattr(module, buffer), weight.numel()))
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
