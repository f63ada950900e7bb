"""Splitting a number of regrown connections across layers (SNFS, RigL-SG, RigL-SM; report section 6.2).

Dettmers & Zettlemoyer (2020) regrow, in total, as many weights as were pruned, and give each layer a
share of that total from a layer statistic (its mean momentum or mean gradient magnitude over active
weights). Two rules for the shares (``masking.redistribution_rule``):

- ``capped`` (the report's code, ``Masking.calc_redistributed_densities`` in ``sparselearning/core.py``,
  after Dettmers' ``calc_growth_redistribution``): a layer's share is ``statistic share x total``, capped at
  0.99 of the positions it has free; what the capped layers cannot take is spread in equal amounts over
  the layers not yet capped, until none overflows.
- ``proportional`` (the report's text, "reallocate layer-wise density proportional to its average sparse
  gradient or momentum"): shares in proportion to the statistic, up to the full free capacity, the overflow
  split again in proportion (water-filling).

Both return integers that sum exactly to the total. The reference code rounds each layer's share (``round``
or ``ceil``, then ``int`` when growing) and so gains or loses weights at every update; here each layer gets
its real-valued share within one weight, and the leftover units go to the largest remainders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

REDISTRIBUTION_RULES = ("capped", "proportional")
CAP_FRACTION = 0.99  # the reference code's ``0.99 * max_regrowth``


def _clean(weights: Sequence[float]) -> list[float]:
    """Non-positive or NaN weights count as zero; infinite ones share among themselves."""
    if any(w == math.inf for w in weights):  # an overflowed statistic outranks every finite one
        weights = [1.0 if w == math.inf else 0.0 for w in weights]
    return [w if math.isfinite(w) and w > 0 else 0.0 for w in weights]


def _to_integers(shares: Sequence[float], total: int, capacities: Sequence[int]) -> list[int]:
    """Integers within one of ``shares`` (each at most its capacity) that sum to ``total``: floors, then
    one more unit to the largest remainders (ties to the lower index)."""
    allocation = [min(capacity, math.floor(share)) for share, capacity in zip(shares, capacities)]
    leftover = total - sum(allocation)
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - math.floor(shares[i])), i))
    for i in order:
        if leftover <= 0:
            break
        if allocation[i] < capacities[i]:
            allocation[i] += 1
            leftover -= 1
    for i in range(len(shares)):  # only if rounding down lost more than one unit per layer (float error)
        room = min(leftover, capacities[i] - allocation[i])
        allocation[i] += room
        leftover -= room
    return allocation


def _check(total: int, weights: Sequence[float], capacities: Sequence[int]) -> None:
    if len(weights) != len(capacities):
        raise ValueError("one weight per layer is needed")
    if total < 0 or total > sum(capacities):
        raise ValueError(f"cannot place {total} units in a total capacity of {sum(capacities)}")


def allocate_proportionally(total: int, weights: Sequence[float], capacities: Sequence[int]) -> list[int]:
    """Split ``total`` integer units over layers in proportion to ``weights``, never above ``capacities``.

    Layers whose proportional share reaches their capacity are filled and removed, and the rest is split
    again (water-filling). If every open layer has weight zero, the remainder is split in proportion to the
    free capacity instead.
    """
    _check(total, weights, capacities)
    weights = _clean(weights)
    shares = [0.0] * len(capacities)
    open_layers = [i for i, cap in enumerate(capacities) if cap > 0]
    remaining = float(total)
    while remaining > 0 and open_layers:
        scores = {i: weights[i] for i in open_layers}
        if sum(scores.values()) <= 0:
            scores = {i: float(capacities[i]) for i in open_layers}
        norm = sum(scores.values())
        proposal = {i: remaining * scores[i] / norm for i in open_layers}
        full = [i for i in open_layers if proposal[i] >= capacities[i]]
        if not full:
            for i in open_layers:
                shares[i] = proposal[i]
            break
        for i in full:
            shares[i] = float(capacities[i])
            remaining -= capacities[i]
        open_layers = [i for i in open_layers if i not in full]
    return _to_integers(shares, total, capacities)


def allocate_capped(
    total: int, weights: Sequence[float], capacities: Sequence[int], cap_fraction: float = CAP_FRACTION
) -> list[int]:
    """Split ``total`` units over layers as the report's code does: layer l gets
    ``min(cap_fraction * capacity_l, share_l * total + r)``, with ``share_l`` its normalised weight and ``r``
    the same amount for every layer, chosen so that the layers together take ``total``.

    This is the fixed point of the reference loop, which adds the capped layers' overflow in equal parts to
    every layer until no layer exceeds its cap. When even the capped layers cannot hold ``total`` (the loop
    gives up after 1,000 rounds there), the caps rise to the full capacity so that the budget stays exact.
    If every weight is zero, the shares follow the free capacity.
    """
    _check(total, weights, capacities)
    weights = _clean(weights)
    if sum(weights) <= 0:
        weights = [float(c) for c in capacities]
    norm = sum(weights) or 1.0
    wanted = [total * w / norm for w in weights]
    caps = [cap_fraction * c for c in capacities]
    if sum(caps) < total:
        caps = [float(c) for c in capacities]

    def taken(extra: float) -> float:
        return sum(min(cap, want + extra) for cap, want in zip(caps, wanted))

    # taken() is piecewise linear and increasing in ``extra``: find the piece that reaches ``total``.
    breakpoints = sorted({max(0.0, cap - want) for cap, want in zip(caps, wanted)})
    extra, low = 0.0, 0.0
    for point in breakpoints:
        if taken(point) >= total:
            open_count = sum(1 for cap, want in zip(caps, wanted) if cap - want > low)
            extra = low + (total - taken(low)) / max(open_count, 1)
            break
        low = point
    else:
        extra = low
    shares = [min(cap, want + extra) for cap, want in zip(caps, wanted)]
    return _to_integers(shares, total, capacities)


def allocate(rule: str, total: int, weights: Sequence[float], capacities: Sequence[int]) -> list[int]:
    """Split ``total`` regrown weights over layers under one of ``REDISTRIBUTION_RULES``."""
    if rule == "capped":
        return allocate_capped(total, weights, capacities)
    return allocate_proportionally(total, weights, capacities)
