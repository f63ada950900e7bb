"""Step schedules of sparse training: when the topology changes, and by how much.

All functions are pure and count steps from 0 (``step`` is the number of optimisation steps already
taken when the current batch arrives, i.e. the 0-based index of the batch).

Two timing conventions (``masking.update_timing``) are offered because the sources differ by a step:

- ``report_code`` (the default): the report's ``main.py`` updates the masks on the batch with
  ``(global_step + 1) % interval == 0`` while ``global_step < end_when``, and the drop fraction it uses was
  computed after the previous batch (``Masking.step`` advances the decay after every optimiser step; an
  update step replaces that call). Updates therefore fall on batches 99, 199, ... and read f(t - 1).
- ``google``: Evci et al.'s ``is_mask_update_iter`` updates at multiples of delta_t of the step counter and
  reads f(t) (batches 100, 200, ...). Two details of theirs are not reproduced: they also update at step 0,
  and their update iterations take a batch without advancing the step counter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rigl_repro.errors import ConfigError

UPDATE_TIMINGS = ("report_code", "google")
DROP_ROUNDINGS = ("ceil", "floor")


def schedule_length(epochs: int, train_size: int, batch_size: int) -> float:
    """The training length that schedules are fractions of, in steps, as the report's code counts it:
    examples seen / batch size (45,000 x 250 / 128 = 87,890.6 for CIFAR; the last, partial batch of an
    epoch counts only in part). The run itself takes ``epochs * ceil(train_size / batch_size)`` steps."""
    return epochs * train_size / batch_size


def steps_for(epochs: int, steps_per_epoch: int) -> int:
    """The schedule length of a run of your own, for ``SparseEngine(total_steps=...)``: the optimizer steps it
    takes, ``epochs * steps_per_epoch`` (``steps_per_epoch = len(train_loader)``, counting a last partial batch,
    divided by the gradient-accumulation steps if any). T_end and the pruning window are fractions of it; the
    report's runs use ``schedule_length`` instead, which counts examples seen over the batch size."""
    for option, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be a whole number >= 1, got {value!r}")
    return epochs * steps_per_epoch


def end_step(length: float, fraction: float) -> int:
    """The step ``fraction`` of the way through a schedule of ``length`` steps, rounded half up.

    T_end of the report's code is the constant 65,918 (``conf/masking/*.yaml``, ``end_when``), which is
    0.75 x 87,890.6 rounded; its 2x and 3x runs multiply it (131,836 and 197,754).
    """
    return int(math.floor(fraction * length + 0.5))


def cosine_drop_fraction(step: int, alpha: float, t_end: int) -> float:
    """Fraction of active weights to drop at ``step`` (report, equation 1).

    ``f(t) = alpha (1 + cos(pi t / T_end)) / 2``, and 0 from T_end on: the closed form of the
    ``CosineAnnealingLR`` that the report's ``sparselearning/funcs/decay.py`` (``CosineDecay``) wraps,
    written in the same order of operations so that ``ceil(f n)`` rounds as theirs does.
    """
    if step >= t_end:
        return 0.0
    return alpha * (1.0 + math.cos(math.pi * step / t_end)) / 2.0


def schedule_step(step: int, timing: str) -> int:
    """The step whose schedule value (drop fraction, pruning target) an update at ``step`` uses.

    (With ``delta_t = 1`` the report's code never advances its decay, which is stepped only on non-update
    batches, so its drop fraction stays alpha; that corner is not reproduced.)
    """
    return max(step - 1, 0) if timing == "report_code" else step


def is_periodic_update(step: int, delta_t: int, t_end: int, timing: str = "report_code") -> bool:
    """Whether ``step`` updates the masks: every ``delta_t`` steps before T_end, under ``timing``."""
    if timing == "report_code":
        return step < t_end and (step + 1) % delta_t == 0
    return 0 < step < t_end and step % delta_t == 0


def drop_count(fraction: float, active: int, rounding: str) -> int:
    """Weights a layer drops: ``fraction * active`` rounded up (the report's and Dettmers' code,
    ``math.ceil`` in ``magnitude_prune``) or down (Evci et al., a cast to int32)."""
    amount = fraction * active
    return min(active, math.ceil(amount) if rounding == "ceil" else math.floor(amount))


def cubic_sparsity(step: int, final_sparsity: float, start: int, end: int) -> float:
    """Target sparsity of gradual magnitude pruning (Zhu & Gupta 2018, equation 1).

    ``s(t) = s_f * (1 - (1 - (t - t0) / (t_end - t0)) ** 3)`` between ``start`` and ``end``; 0 before,
    ``s_f`` after. Written as the report's ``MagnitudePruneDecay.cumulative_sparsity`` orders it
    (``s_f + (0 - s_f) * (1 - progress) ** 3``), so that rounding its product up agrees to the weight.
    """
    if step <= start:
        return 0.0
    if step >= end:
        return final_sparsity
    remaining = (1 - (step - start) / (end - start)) ** 3
    return final_sparsity + (0.0 - final_sparsity) * remaining


def pruning_window(
    length: float, start_fraction: float, end_fraction: float, delta_t: int, timing: str = "report_code"
) -> tuple[int, int]:
    """Start and end steps of gradual pruning.

    ``report_code``: the two fractions of the schedule length, as its ``start_when`` (700) and
    ``end_when`` (65,918). ``google``: the end is moved back onto the ``delta_t`` grid from the start, so
    that the last pruning step lands exactly on it.
    """
    start, end = end_step(length, start_fraction), end_step(length, end_fraction)
    if timing == "report_code":
        return start, end
    return start, start + delta_t * ((end - start) // delta_t)


def is_pruning_step(step: int, start: int, end: int, delta_t: int, timing: str = "report_code") -> bool:
    """Whether gradual pruning updates the masks at ``step``.

    ``report_code``: at every periodic update before ``end`` (the ones before ``start`` prune nothing, but
    still take the place of an optimiser step, as in its ``main.py``). ``google``: every ``delta_t`` steps
    in ``(start, end]``.
    """
    if timing == "report_code":
        return is_periodic_update(step, delta_t, end, timing)
    return start < step <= end and (step - start) % delta_t == 0


def scaled_steps(steps: int, multiplier: float) -> int:
    """A step count under the training-length multiplier (the report's 2x, 3x rows): ``round(steps * m)``.

    It applies to the epochs and the learning-rate decay interval; T_end follows because it is a fraction of
    the schedule length. alpha, delta_t and the warm-up are not scaled (the report's ``main.py``).
    """
    return int(round(steps * multiplier))


def scaled_milestones(milestones: Sequence[int], multiplier: float) -> list[int]:
    """Learning-rate milestones under the training-length multiplier."""
    return [scaled_steps(milestone, multiplier) for milestone in milestones]
