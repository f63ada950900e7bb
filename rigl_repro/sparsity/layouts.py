"""How a masked weight's mask is stored in an export (``rigl_repro.export``): one layout per weight.

A weight's active values are always stored the same way, as one float per active weight in row-major order
(``weight[mask]``); the layout says how the mask itself is written:

- ``bits``: the mask flattened row-major, packed eight to a byte, bit ``i`` of byte ``j`` being element ``8 j + i``
  (NumPy's ``packbits(..., bitorder="little")``). Any mask; 1 bit per weight. The layout of every unstructured
  mask, and of a layer every weight of which is active (a layer a distribution keeps dense is outside any
  structure).
- ``fan_in``: constant fan-in, the condensed representation of Lasby et al. 2024 (calgaryml/condensed-sparsity):
  every live neuron (a row of the flattened weight) has the same ``k`` active inputs, an ablated one none. Stored
  as one bit per neuron (``neurons``: live or not) and, for each active weight, its input's index within the
  neuron's flattened fan-in (``columns``, ``ceil(log2 fan_in)`` bits each). The values, read as a
  (live neurons, ``k``) matrix, are the condensed weight matrix and ``columns`` its index matrix: what a
  condensed kernel multiplies, ``y[:, o] = sum_j values[o, j] x[:, columns[o, j]]``.
- ``nm``: every group of ``m`` consecutive inputs holds exactly its capacity (``n``; a neuron's shorter last group
  its share), as ``rigl_repro.sparsity.structure.NOfM`` lays groups out. Stored as each active weight's position
  within its group (``positions``, ``ceil(log2 m)`` bits each). For 2:4 the values, read as a
  (rows, fan_in / 2) matrix, are the compressed matrix of NVIDIA's semi-structured sparsity and ``positions``
  the 2 bits per value that its metadata encodes (in plain order, before a kernel's own reordering):
  ``torch.sparse.to_sparse_semi_structured`` takes the expanded dense weight.

The structured layouts cost ``ceil(log2 size)`` bits per active weight instead of one bit per weight: smaller
than ``bits`` below a density of about ``1 / log2(fan_in)`` for ``fan_in``, the same size for 2:4. They are
chosen for what a kernel can use without a conversion, and each reloads the exact mask ``bits`` would.

Integers are packed as their binary digits, least significant first, through the same bit packing
(``packed_integers``). Decoding checks what it reads (lengths, ranges, repeated positions) and says what is
wrong in a ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rigl_repro.sparsity.structure import FAN_IN, N_OF_M, NOfM, rows_and_fan_in

BITS = "bits"

# What a stored part may be: its dtype and its shape (None: one dimension of a length only decoding can check).
PartLayout = Mapping[str, tuple[torch.dtype, tuple[int, ...] | None]]


def packed_bits(flags: torch.Tensor) -> torch.Tensor:
    """Booleans flattened row-major as uint8 bits, eight to a byte, little bit order; ceil(numel / 8) bytes."""
    flat = flags.detach().to("cpu").contiguous().reshape(-1).numpy()
    return torch.from_numpy(np.packbits(flat, bitorder="little"))


def unpacked_bits(bits: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` booleans (one dimension) that ``packed_bits`` packed into ``bits``."""
    if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() != (count + 7) // 8:
        raise ValueError(f"{bits.numel()} {bits.dtype} entries do not hold {count} bits")
    return torch.from_numpy(np.unpackbits(bits.numpy(), count=count, bitorder="little").astype(bool))


def bit_width(size: int) -> int:
    """Bits that index ``size`` positions: ``ceil(log2 size)``, at least one."""
    return max(1, (size - 1).bit_length())


def packed_integers(values: torch.Tensor, width: int) -> torch.Tensor:
    """Integers in ``[0, 2**width)``, each as ``width`` binary digits (least significant first), packed."""
    digits = (values.reshape(-1, 1).to(torch.int64) >> torch.arange(width)) & 1
    return packed_bits(digits.to(torch.bool))


def unpacked_integers(bits: torch.Tensor, count: int, width: int) -> torch.Tensor:
    """The ``count`` int64 integers of ``width`` bits each that ``packed_integers`` packed into ``bits``."""
    digits = unpacked_bits(bits, count * width).reshape(count, width).to(torch.int64)
    return (digits << torch.arange(width)).sum(dim=1)


def _matrix(mask: torch.Tensor) -> torch.Tensor:
    """A mask as (neurons, flattened fan-in), on the CPU."""
    return mask.detach().to("cpu").reshape(mask.shape[0], -1)


def _from_columns(shape: tuple[int, ...], rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """The mask of ``shape`` active at (``rows[i]``, ``columns[i]``) of its (neurons, fan-in) view; a ValueError
    if a position is out of range or repeated."""
    neurons, fan_in = rows_and_fan_in(shape)
    if columns.numel() and int(columns.max()) >= fan_in:
        raise ValueError(f"an input index reaches {int(columns.max())}; the fan-in is {fan_in}")
    matrix = torch.zeros(neurons, fan_in, dtype=torch.bool)
    matrix[rows, columns] = True
    if int(matrix.sum()) != columns.numel():
        raise ValueError("an active position is stored twice")
    return matrix.reshape(shape)


@dataclass(frozen=True)
class MaskLayout:
    """How a mask is stored; this base layout is ``bits``: any mask, one bit per weight (as ``MaskStructure`` is
    the unstructured structure)."""

    name: ClassVar[str] = BITS

    def fits(self, mask: torch.Tensor) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        """The layout as the export's metadata records it."""
        return {"layout": self.name}

    def parts(self, shape: tuple[int, ...]) -> dict[str, tuple[torch.dtype, tuple[int, ...] | None]]:
        """Each stored part's name suffix, dtype and shape (None: one dimension, checked by ``decode``)."""
        return {"bits": (torch.uint8, ((math.prod(shape) + 7) // 8,))}

    def encode(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parts that store ``mask``, by name suffix."""
        return {"bits": packed_bits(mask)}

    def decode(self, parts: Mapping[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
        """The boolean mask of ``shape`` that ``parts`` store."""
        return unpacked_bits(parts["bits"], math.prod(shape)).reshape(shape)


@dataclass(frozen=True)
class CondensedFanIn(MaskLayout):
    """Constant fan-in: ``fan_in`` active inputs in every live neuron, none in an ablated one."""

    name: ClassVar[str] = FAN_IN
    fan_in: int = 1

    def fits(self, mask: torch.Tensor) -> bool:
        per_neuron = _matrix(mask).sum(dim=1)
        return bool(((per_neuron == 0) | (per_neuron == self.fan_in)).all()) and bool((per_neuron > 0).any())

    def describe(self) -> dict[str, Any]:
        return {"layout": self.name, "fan_in": self.fan_in}

    def parts(self, shape: tuple[int, ...]) -> dict[str, tuple[torch.dtype, tuple[int, ...] | None]]:
        neurons, _ = rows_and_fan_in(shape)
        return {"neurons": (torch.uint8, ((neurons + 7) // 8,)), "columns": (torch.uint8, None)}

    def encode(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        matrix = _matrix(mask)
        columns = matrix.nonzero()[:, 1]  # row-major: the order of the values
        return {"neurons": packed_bits(matrix.any(dim=1)),
                "columns": packed_integers(columns, bit_width(matrix.shape[1]))}  # fmt: skip

    def decode(self, parts: Mapping[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
        neurons, fan_in = rows_and_fan_in(shape)
        live = unpacked_bits(parts["neurons"], neurons).nonzero()[:, 0]
        count = live.numel() * self.fan_in
        columns = unpacked_integers(parts["columns"], count, bit_width(fan_in))
        return _from_columns(shape, live.repeat_interleave(self.fan_in), columns)


@dataclass(frozen=True)
class NOfMSlots(MaskLayout):
    """N:M with every group at its capacity: each active weight's position within its group."""

    name: ClassVar[str] = N_OF_M
    n: int = 2
    m: int = 4

    def _groups(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, capacity) of the (groups, m) view of a layer, as the structure lays it out."""
        return NOfM(self.n, self.m).layout(shape, torch.device("cpu"))

    def fits(self, mask: torch.Tensor) -> bool:
        index, capacity = self._groups(tuple(mask.shape))
        flat = torch.cat([mask.detach().to("cpu").reshape(-1), torch.zeros(1, dtype=torch.bool)])
        return bool(torch.equal(flat[index].sum(dim=1), capacity))

    def describe(self) -> dict[str, Any]:
        return {"layout": self.name, "n": self.n, "m": self.m}

    def parts(self, shape: tuple[int, ...]) -> dict[str, tuple[torch.dtype, tuple[int, ...] | None]]:
        active = NOfM(self.n, self.m).count(shape, self.n / self.m)
        return {"positions": (torch.uint8, ((active * bit_width(self.m) + 7) // 8,))}

    def encode(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        columns = _matrix(mask).nonzero()[:, 1]
        return {"positions": packed_integers(columns % self.m, bit_width(self.m))}

    def decode(self, parts: Mapping[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
        neurons, fan_in = rows_and_fan_in(shape)
        _, capacity = self._groups(shape)
        per_neuron = capacity[: math.ceil(fan_in / self.m)]  # every neuron's groups have the same capacities
        group = torch.repeat_interleave(torch.arange(per_neuron.numel()), per_neuron).repeat(neurons)
        positions = unpacked_integers(parts["positions"], group.numel(), bit_width(self.m))
        if group.numel() and int(positions.max()) >= self.m:
            raise ValueError(f"a position within a group of {self.m} is {int(positions.max())}")
        rows = torch.arange(neurons).repeat_interleave(int(per_neuron.sum()))
        return _from_columns(shape, rows, group * self.m + positions)


def choose_layout(mask: torch.Tensor, structure: str, n: int = 2, m: int = 4) -> MaskLayout:
    """The layout of a weight's mask in a run of ``masking.structure``: the structure's own where the mask has it
    (not for a layer with every weight active, which no structure shapes), else ``bits``."""
    size = mask.numel()
    active = int(mask.sum())
    if active in (0, size):
        return MaskLayout()
    if structure == FAN_IN:
        per_neuron = _matrix(mask).sum(dim=1)
        layout: MaskLayout = CondensedFanIn(int(per_neuron.max()))
    elif structure == N_OF_M:
        layout = NOfMSlots(n, m)
    else:
        return MaskLayout()
    return layout if layout.fits(mask) else MaskLayout()


def _positive_int(description: Mapping[str, Any], key: str) -> int:
    value = description.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"has {key}={value!r}, not a positive integer")
    return value


def layout_from(description: Any) -> MaskLayout:
    """The layout a metadata description (``describe``'s) names; a ValueError saying what is wrong with it."""
    if not isinstance(description, dict):
        raise ValueError(f"is {description!r}, not an object")
    name = description.get("layout")
    if name == BITS and set(description) == {"layout"}:
        return MaskLayout()
    if name == FAN_IN and set(description) == {"layout", "fan_in"}:
        return CondensedFanIn(_positive_int(description, "fan_in"))
    if name == N_OF_M and set(description) == {"layout", "n", "m"}:
        n, m = _positive_int(description, "n"), _positive_int(description, "m")
        if n >= m:
            raise ValueError(f"has n={n} and m={m}, not n < m")
        return NOfMSlots(n, m)
    raise ValueError(f"is {description!r}, not a mask layout ({BITS}, {FAN_IN} with fan_in, {N_OF_M} with n and m)")


__all__ = ["BITS", "CondensedFanIn", "MaskLayout", "NOfMSlots", "bit_width", "choose_layout",
           "layout_from", "packed_bits", "packed_integers", "unpacked_bits", "unpacked_integers"]  # fmt: skip
