"""Step schedules of sparse training: when the topology changes, and by how much.

All functions are pure and count steps from 0 (``step`` is the number of optimisation steps already
taken when the current batch arrives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def end_step(total_steps: int, fraction: float) -> int:
    """T_end, the step after which masks stop changing: ``floor(fraction * total_steps)``.

    With the report's 87,891 steps (250 epochs of 352 batches) and 0.75 this gives 65,918, as its code does.
    """
    return int(math.floor(fraction * total_steps))


def cosine_drop_fraction(step: int, alpha: float, t_end: int) -> float:
    """Fraction of active weights to drop at ``step`` (report, equation 1).

    ``f(t) = alpha / 2 * (1 + cos(pi * t / T_end))``, and 0 from T_end on.
    """
    if step >= t_end:
        return 0.0
    return alpha / 2.0 * (1.0 + math.cos(math.pi * step / t_end))


def is_periodic_update(step: int, delta_t: int, t_end: int) -> bool:
    """Whether ``step`` updates the masks: every ``delta_t`` steps, for ``0 < step < t_end``."""
    return 0 < step < t_end and step % delta_t == 0


def cubic_sparsity(step: int, final_sparsity: float, start: int, end: int) -> float:
    """Target sparsity of gradual magnitude pruning (Zhu & Gupta 2018, equation 1).

    ``s(t) = s_f * (1 - (1 - (t - t0) / (t_end - t0)) ** 3)`` between ``start`` and ``end``; 0 before,
    ``s_f`` after.
    """
    if step <= start:
        return 0.0
    if step >= end:
        return final_sparsity
    progress = (step - start) / (end - start)
    return final_sparsity * (1.0 - (1.0 - progress) ** 3)


def pruning_window(total_steps: int, start_fraction: float, end_fraction: float, delta_t: int) -> tuple[int, int]:
    """Start and end steps of gradual pruning, the end moved back onto the ``delta_t`` grid from the start.

    Aligning the end makes the last pruning step land exactly on it, so the final sparsity is reached.
    """
    start = end_step(total_steps, start_fraction)
    end = end_step(total_steps, end_fraction)
    return start, start + delta_t * ((end - start) // delta_t)


def is_pruning_step(step: int, start: int, end: int, delta_t: int) -> bool:
    """Whether gradual pruning prunes at ``step``: every ``delta_t`` steps in ``(start, end]``."""
    return start < step <= end and (step - start) % delta_t == 0


def scaled_steps(steps: int, multiplier: float) -> int:
    """A step count under the training-length multiplier (the report's 2x, 3x rows): ``round(steps * m)``.

    It applies to the total step count and the learning-rate milestones; T_end follows because it is a
    fraction of the total. alpha and delta_t are not scaled.
    """
    return int(round(steps * multiplier))


def scaled_milestones(milestones: Sequence[int], multiplier: float) -> list[int]:
    """Learning-rate milestones under the training-length multiplier."""
    return [scaled_steps(milestone, multiplier) for milestone in milestones]
