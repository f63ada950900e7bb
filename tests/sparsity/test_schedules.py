import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rigl_repro.sparsity.schedules import (
    cosine_drop_fraction,
    cubic_sparsity,
    end_step,
    is_periodic_update,
    is_pruning_step,
    pruning_window,
    scaled_milestones,
    scaled_steps,
)


def test_end_step_matches_the_report_code():
    assert end_step(87_891, 0.75) == 65_918


def test_cosine_drop_fraction_follows_equation_1():
    assert cosine_drop_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert cosine_drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert cosine_drop_fraction(250, 0.3, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert cosine_drop_fraction(1000, 0.3, 1000) == 0.0
    assert cosine_drop_fraction(5000, 0.3, 1000) == 0.0


@given(st.integers(1, 1000), st.integers(2, 100_000))
def test_periodic_updates_every_delta_t_before_t_end(delta_t, t_end):
    steps = [s for s in range(t_end + delta_t + 1) if is_periodic_update(s, delta_t, t_end)]
    assert steps == list(range(delta_t, t_end, delta_t))


def test_cubic_sparsity_is_zhu_gupta():
    assert cubic_sparsity(0, 0.9, 0, 100) == 0.0
    assert cubic_sparsity(50, 0.9, 0, 100) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_sparsity(100, 0.9, 0, 100) == 0.9
    assert cubic_sparsity(150, 0.9, 0, 100) == 0.9


def test_pruning_window_ends_on_a_pruning_step():
    start, end = pruning_window(1000, 0.1, 0.75, 30)
    assert (start, end) == (100, 100 + 30 * 21)
    steps = [s for s in range(1000) if is_pruning_step(s, start, end, 30)]
    assert steps[0] == 130 and steps[-1] == end


def test_training_length_multiplier_scales_steps_milestones_and_t_end():
    total = scaled_steps(87_891, 2)
    assert total == 175_782
    assert scaled_milestones([30_000, 60_000], 2) == [60_000, 120_000]
    assert end_step(total, 0.75) == 131_836
