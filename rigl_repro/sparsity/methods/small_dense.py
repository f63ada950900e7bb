"""Small-dense baseline: a dense model made narrower until its weight count matches the target density."""

from __future__ import annotations

from collections.abc import Callable

from rigl_repro.sparsity.methods.base import SparseMethod


def width_for_density(count_weights: Callable[[float], int], density: float, iterations: int = 40) -> float:
    """The width multiplier whose model has the number of conv/linear weights closest to
    ``density`` times that of the full-width model.

    ``count_weights(width)`` builds (or describes) the model at that width and counts its sparsifiable
    weights; the count grows with the width, so a bisection finds the crossing point.
    """
    target = density * count_weights(1.0)
    low, high = 0.0, 1.0
    for _ in range(iterations):
        middle = (low + high) / 2
        if count_weights(middle) < target:
            low = middle
        else:
            high = middle
    candidates = [w for w in (low, high) if w > 0]
    return min(candidates, key=lambda w: (abs(count_weights(w) - target), w))


class SmallDense(SparseMethod):
    """Dense training of a narrower model (report, 4.4): no masks, a width multiplier instead."""

    name = "small_dense"
    masked = False

    def width_multiplier(self, count_weights: Callable[[float], int]) -> float:
        return width_for_density(count_weights, self.density)
