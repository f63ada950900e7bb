"""Small-dense baseline: a dense model made narrower until its weight count matches the target density."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rigl_repro.errors import require_choice
from rigl_repro.sparsity.methods.base import TargetDensity

WIDTH_RULES = ("sqrt", "weight_count")


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


@dataclass(kw_only=True, eq=False)
class SmallDense(TargetDensity):
    """Dense training of a narrower model (report, 4.4): no masks, a width multiplier instead.

    ``width_rule: sqrt`` (the report's code, ``models/wide_resnet.py`` and ``models/resnet.py``): every
    channel count times ``sqrt(density)``, rounded down, so the weight count is about ``density`` times the
    full model's (slightly less, from the rounding). ``weight_count``: the width whose conv and linear weights
    come closest to ``density`` times the full model's (the report's text gives no rule).
    """

    name = "small_dense"
    masked = False
    width_rule: str = "sqrt"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_choice("masking.width_rule", self.width_rule, WIDTH_RULES)

    def engine_refusal(self) -> str:
        return (
            "small_dense changes the model, not its masks: build the narrower model yourself (every channel "
            f"count x sqrt(density) = x {math.sqrt(self.density):.4f}) and train it densely, with the method 'dense'"
        )

    def width_multiplier(self, count_weights: Callable[[float], int]) -> float:
        if self.width_rule == "sqrt":
            return math.sqrt(self.density)
        return width_for_density(count_weights, self.density)
