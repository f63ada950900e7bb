"""Splitting a number of regrown connections across layers (SNFS, RigL-SG, RigL-SM; report section 6.2).

Dettmers & Zettlemoyer (2020) regrow, in total, as many weights as were pruned, and give each layer a
share proportional to a layer statistic (its mean momentum or mean gradient magnitude over active weights).
A layer can take no more than its free positions; what it cannot take goes to the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def allocate_proportionally(total: int, weights: Sequence[float], capacities: Sequence[int]) -> list[int]:
    """Split ``total`` integer units over layers in proportion to ``weights``, never above ``capacities``.

    Layers whose proportional share reaches their capacity are filled and removed, and the rest is split
    again (water-filling). Fractional shares are floored and the remaining units go to the largest
    remainders, ties to the lower index, so the result is deterministic and sums exactly to ``total``.
    Non-positive or NaN weights count as zero, and infinite ones share the units among themselves; if every
    open layer has weight zero, the remainder is split in proportion to the free capacity instead.
    """
    if total < 0 or total > sum(capacities):
        raise ValueError(f"cannot place {total} units in a total capacity of {sum(capacities)}")
    if any(w == math.inf for w in weights):  # an overflowed statistic outranks every finite one
        weights = [1.0 if w == math.inf else 0.0 for w in weights]
    weights = [w if math.isfinite(w) and w > 0 else 0.0 for w in weights]
    allocation = [0] * len(capacities)
    open_layers = [i for i, cap in enumerate(capacities) if cap > 0]
    remaining = total
    while remaining > 0:
        scores = {i: weights[i] for i in open_layers}
        if sum(scores.values()) <= 0:
            scores = {i: float(capacities[i]) for i in open_layers}
        norm = sum(scores.values())
        shares = {i: remaining * scores[i] / norm for i in open_layers}
        full = [i for i in open_layers if shares[i] >= capacities[i]]
        if full:
            for i in full:
                allocation[i] = capacities[i]
                remaining -= capacities[i]
            open_layers = [i for i in open_layers if i not in full]
            continue
        floors = {i: math.floor(shares[i]) for i in open_layers}
        for i in open_layers:
            allocation[i] = floors[i]
        leftover = remaining - sum(floors.values())
        by_remainder = sorted(open_layers, key=lambda i: (-(shares[i] - floors[i]), i))
        for i in by_remainder[:leftover]:
            allocation[i] += 1
        remaining = 0
    return allocation
