"""Mask structure: which sets of active weights a layer may have, and the one place masks are selected.

Every mask the engine and the methods make goes through a ``MaskStructure``: the count a density gives, a
random mask, the ``k`` best of some scores to keep, and the ``k`` best free positions to grow. Three
structures (``masking.structure``):

- ``unstructured`` (the default, the report's): any ``k`` weights of the layer; exactly the top-k and random
  masks of ``rigl_repro.sparsity.masks``, so runs are bit for bit what they were.
- ``fan_in``: every output neuron (a Linear's row, a convolution's filter) has the same number of active
  inputs (Lasby et al. 2024, "Dynamic Sparse Training with Structured Sparsity", constant fan-in). A density
  gives ``max(1, round(density x fan_in))`` inputs per neuron.
- ``nm``: at most ``n`` active weights in every group of ``m`` consecutive weights along a neuron's inputs
  (its flattened fan-in, in memory order: for a convolution, input channel, then kernel row, then column), as
  NVIDIA's 2:4 sparse tensor cores take them. A neuron whose fan-in is not a multiple of ``m`` ends in a
  shorter group of ``r`` weights that may hold ``floor(n r / m)``. The density is ``n / m``.

Both structured kinds are groups with capacities: the layer's weights are laid out as a (groups, group size)
matrix, padded where a group is shorter, and a group may hold at most its capacity. Growth ranks the free
positions within each group and admits, in each, as many as the group lacks, then takes the best of those:
a layer that dropped ``k`` and grows ``k`` is full again, every group at its capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from rigl_repro.errors import ConfigError
from rigl_repro.sparsity.masks import random_mask, top_k_mask

UNSTRUCTURED, FAN_IN, N_OF_M = "unstructured", "fan_in", "nm"
STRUCTURES = (UNSTRUCTURED, FAN_IN, N_OF_M)
# The masking options that describe the structure. Under ``unstructured`` they mean nothing, so a run's
# identity leaves them out and runs recorded before structures existed are the same runs.
STRUCTURE_OPTIONS = ("structure", "n", "m")


def rows_and_fan_in(shape: tuple[int, ...]) -> tuple[int, int]:
    """(output neurons, inputs per neuron) of a weight: its first dimension, and the product of the rest."""
    return shape[0], math.prod(shape[1:])


def _top_per_group(scores: torch.Tensor, quota: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the ``quota[g]`` best entries of each row ``g`` of ``scores`` (ties to the lower
    index, as ``top_k_mask``)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return ranks < quota.unsqueeze(1)


@dataclass(frozen=True)
class MaskStructure:
    """Unstructured masks: any ``count`` weights of a layer."""

    name: ClassVar[str] = UNSTRUCTURED
    # Whether the counts an update leaves are known only on the device (SRigL's ablation): the engine then
    # reads them back once per layer at that update.
    counts_on_device: ClassVar[bool] = False

    def check_layer(self, layer_name: str, shape: tuple[int, ...]) -> None:
        """Refuse, in one line, a layer this structure cannot shape."""

    def count(self, shape: tuple[int, ...], density: float) -> int:
        """Active weights of a layer of ``shape`` at ``density``: ``round(density x size)``, at least one (the
        distributions' ``nonzero_counts``)."""
        size = math.prod(shape)
        return min(size, max(1, round(density * size)))

    def legal_drop(self, shape: tuple[int, ...], n_active: int, n_drop: int) -> int:
        """The drop count closest to ``n_drop`` (not below it) that leaves a mask of this structure."""
        return n_drop

    def random(self, shape: tuple[int, ...], count: int, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:  # fmt: skip
        """A mask of ``count`` active weights at random positions allowed by the structure."""
        return random_mask(torch.Size(shape), count, generator, device)

    def keep(self, scores: torch.Tensor, count: int) -> torch.Tensor:
        """The ``count`` best of ``scores`` (``-inf`` where a weight may not be kept) that form a mask of this
        structure."""
        return top_k_mask(scores, count)

    def grow(self, kept: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` positions outside ``kept`` with the best ``scores`` (``-inf`` at ``kept``) such that
        ``kept`` with them is a mask of this structure; returns only the grown positions."""
        return top_k_mask(scores, count)

    def violation(self, mask: torch.Tensor) -> str | None:
        """What is wrong with ``mask`` under this structure (None: nothing). Reads the device: for tests and
        checks, not the training step."""
        return None


@dataclass(frozen=True)
class GroupCapacity(MaskStructure):
    """A structure of groups of weights, each holding at most its capacity: ``layout`` gives the (groups,
    group size) view of a layer and each group's capacity."""

    def layout(self, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, capacity): ``index[g, j]`` is the flat weight index of member ``j`` of group ``g`` (-1 for
        padding), and ``capacity[g]`` how many of its members may be active."""
        raise NotImplementedError

    def _grouped(self, values: torch.Tensor, index: torch.Tensor, fill: float | bool) -> torch.Tensor:
        flat = values.reshape(-1)
        padded = torch.cat([flat, torch.full((1,), fill, dtype=flat.dtype, device=flat.device)])
        return padded[index]  # index -1 reads the fill value

    def _scatter(self, grouped: torch.Tensor, index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        flat = torch.zeros(math.prod(shape) + 1, dtype=torch.bool, device=grouped.device)
        flat[index.reshape(-1)] = grouped.reshape(-1)
        flat[-1] = False
        return flat[:-1].reshape(shape)

    def _fill(self, scores: torch.Tensor, quota: torch.Tensor) -> torch.Tensor:
        """The ``quota[g]`` best ``scores`` of every group, as a mask of the layer's shape."""
        index, _ = self.layout(tuple(scores.shape), scores.device)
        grouped = self._grouped(scores.float(), index, float("-inf"))
        chosen = _top_per_group(grouped, quota) & (index >= 0) & (grouped > float("-inf"))
        return self._scatter(chosen, index, tuple(scores.shape))

    def targets(self, kept: torch.Tensor, count: int) -> torch.Tensor:
        """How many active weights each group should hold once ``count`` more join ``kept``: its capacity."""
        return self.layout(tuple(kept.shape), kept.device)[1]

    def random(self, shape: tuple[int, ...], count: int, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:  # fmt: skip
        if count == math.prod(shape):  # a dense layer (Uniform's first, ERK's overflow) is outside any structure
            return torch.ones(shape, dtype=torch.bool, device=device)
        noise = torch.rand(shape, generator=generator, device=generator.device).to(device)
        mask = self._fill(noise, self.targets(torch.zeros(shape, dtype=torch.bool, device=device), count))
        return self.keep(torch.where(mask, noise, float("-inf")), count)

    def grow(self, kept: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
        index, _ = self.layout(tuple(kept.shape), kept.device)
        active = self._grouped(kept, index, False).sum(dim=1)
        admitted = self._fill(scores, (self.targets(kept, count) - active).clamp(min=0))
        return top_k_mask(torch.where(admitted, scores.float(), float("-inf")), count)

    def violation(self, mask: torch.Tensor) -> str | None:
        index, capacity = self.layout(tuple(mask.shape), mask.device)
        per_group = self._grouped(mask, index, False).sum(dim=1)
        over = int((per_group > capacity).sum())
        return f"{over} groups hold more active weights than their capacity" if over else None


@dataclass(frozen=True)
class FanIn(GroupCapacity):
    """Constant fan-in: every neuron has the same number of active inputs."""

    name: ClassVar[str] = FAN_IN

    def count(self, shape: tuple[int, ...], density: float) -> int:
        rows, fan_in = rows_and_fan_in(shape)
        return rows * min(fan_in, max(1, round(density * fan_in)))

    def layout(self, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rows, fan_in = rows_and_fan_in(shape)
        index = torch.arange(rows * fan_in, device=device).reshape(rows, fan_in)
        return index, torch.full((rows,), fan_in, device=device)

    def targets(self, kept: torch.Tensor, count: int) -> torch.Tensor:
        """Every neuron the same share of what will be active (read on the device: no host sync)."""
        rows, _ = rows_and_fan_in(tuple(kept.shape))
        return ((kept.sum() + count) // rows).expand(rows)

    def legal_drop(self, shape: tuple[int, ...], n_active: int, n_drop: int) -> int:
        """A whole number of inputs per neuron: ``n_drop`` rounded up to a multiple of the neurons."""
        rows, _ = rows_and_fan_in(shape)
        return min(n_active, rows * math.ceil(n_drop / rows))

    def keep(self, scores: torch.Tensor, count: int) -> torch.Tensor:
        rows, _ = rows_and_fan_in(tuple(scores.shape))
        if count % rows:
            raise ValueError(f"{count} weights do not split evenly over {rows} neurons")
        return self._fill(scores, torch.full((rows,), count // rows, device=scores.device))

    def violation(self, mask: torch.Tensor) -> str | None:
        per_neuron = mask.reshape(mask.shape[0], -1).sum(dim=1)
        active = per_neuron[per_neuron > 0]
        if active.numel() and bool((active != active[0]).any()):
            return f"active neurons have fan-ins from {int(active.min())} to {int(active.max())}"
        return None


@dataclass(frozen=True)
class NOfM(GroupCapacity):
    """N:M: at most ``n`` active weights in every ``m`` consecutive inputs of a neuron."""

    name: ClassVar[str] = N_OF_M
    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and isinstance(self.m, int) and 1 <= self.n < self.m):
            raise ConfigError(f"masking.n={self.n!r}, masking.m={self.m!r} is not an N:M structure; expected "
                              "integers with 1 <= n < m, e.g. masking.n=2 masking.m=4")  # fmt: skip

    @property
    def density(self) -> float:
        return self.n / self.m

    def layout(self, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rows, fan_in = rows_and_fan_in(shape)
        groups = math.ceil(fan_in / self.m)
        column = torch.arange(groups * self.m, device=device).reshape(groups, self.m)
        inside = column < fan_in
        index = torch.where(inside, column + fan_in * torch.arange(rows, device=device).reshape(rows, 1, 1), -1)
        members = inside.sum(dim=1)  # m, but r in a neuron's last, shorter group
        capacity = torch.where(members == self.m, self.n, (self.n * members) // self.m)
        return index.reshape(rows * groups, self.m), capacity.repeat(rows)

    def keep(self, scores: torch.Tensor, count: int) -> torch.Tensor:
        """The ``count`` best scores with at most each group's capacity from every group (among an N:M
        mask's active weights, simply the ``count`` best)."""
        admitted = self._fill(scores, self.layout(tuple(scores.shape), scores.device)[1])
        return top_k_mask(torch.where(admitted, scores.float(), float("-inf")), count)

    def count(self, shape: tuple[int, ...], density: float) -> int:
        """Every group at its capacity, whatever ``density`` (N:M fixes it at n/m)."""
        rows, fan_in = rows_and_fan_in(shape)
        full, rest = divmod(fan_in, self.m)
        return rows * (full * self.n + (self.n * rest) // self.m)


@dataclass(frozen=True, eq=False)
class NeuronTargets(FanIn):
    """Constant fan-in over the live neurons of one layer at one update, as SRigL makes it (Lasby et al. 2024;
    calgaryml/condensed-sparsity, ``rigl_constant_fan.py``): ``live`` (a boolean per neuron) and ``fan_in``, the
    inputs every live neuron has after the update; an ablated neuron has none.

    ``keep`` takes the ``count`` best scores of the layer with the ablated neurons' below every other, then
    trims every neuron to its target; ``grow`` fills every live neuron up to ``fan_in`` with its best free
    positions, whatever ``count`` says, so the layer ends with ``fan_in`` x live neurons active.
    """

    live: torch.Tensor = None  # type: ignore[assignment]
    fan_in: int = 0
    counts_on_device: ClassVar[bool] = True

    def legal_drop(self, shape: tuple[int, ...], n_active: int, n_drop: int) -> int:
        return n_drop  # SRigL drops across the layer, then trims per neuron

    def targets(self, kept: torch.Tensor, count: int) -> torch.Tensor:
        return torch.where(self.live, self.fan_in, 0)

    def keep(self, scores: torch.Tensor, count: int) -> torch.Tensor:
        rows = scores.shape[0]
        live = self.live.reshape(rows, *([1] * (scores.dim() - 1)))
        lowered = torch.where(live, scores.float(), scores.float() - 1e30)  # still above -inf (not allowed)
        kept = top_k_mask(lowered.masked_fill(scores == float("-inf"), float("-inf")), count)
        return self._fill(torch.where(kept, scores.float(), float("-inf")), self.targets(kept, count))

    def grow(self, kept: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
        index, _ = self.layout(tuple(kept.shape), kept.device)
        active = self._grouped(kept, index, False).sum(dim=1)
        return self._fill(scores, (self.targets(kept, count) - active).clamp(min=0))


def build_structure(name: str, n: int = 2, m: int = 4) -> MaskStructure:
    """The structure ``masking.structure`` names (``n`` and ``m`` are read by ``nm`` only)."""
    if name == UNSTRUCTURED:
        return MaskStructure()
    if name == FAN_IN:
        return FanIn()
    if name == N_OF_M:
        return NOfM(n, m)
    raise ConfigError(f"masking.structure={name!r} is not a mask structure; choose one of {', '.join(STRUCTURES)}")


__all__ = ["FAN_IN", "N_OF_M", "STRUCTURES", "STRUCTURE_OPTIONS", "UNSTRUCTURED", "FanIn", "GroupCapacity",
           "MaskStructure", "NOfM", "NeuronTargets", "build_structure", "rows_and_fan_in"]  # fmt: skip
