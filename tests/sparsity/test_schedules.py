import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rigl_repro.sparsity.schedules import (
    cosine_drop_fraction,
    cubic_sparsity,
    drop_count,
    end_step,
    is_periodic_update,
    is_pruning_step,
    pruning_window,
    scaled_milestones,
    scaled_steps,
    schedule_length,
    schedule_step,
)

CIFAR_LENGTH = schedule_length(250, 45_000, 128)  # the report code's 87,890.6 steps


def test_t_end_is_the_report_codes_constant():
    assert CIFAR_LENGTH == pytest.approx(87_890.625)
    assert end_step(CIFAR_LENGTH, 0.75) == 65_918  # end_when in conf/specific/cifar10_wrn_22_2_masking.yaml


def test_cosine_drop_fraction_follows_equation_1():
    assert cosine_drop_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert cosine_drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert cosine_drop_fraction(250, 0.3, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert cosine_drop_fraction(1000, 0.3, 1000) == 0.0
    assert cosine_drop_fraction(5000, 0.3, 1000) == 0.0


def test_report_code_timing_updates_on_batches_99_199_and_reads_the_previous_steps_fraction():
    updates = [s for s in range(66_000) if is_periodic_update(s, 100, 65_918)]
    assert updates[:3] == [99, 199, 299] and updates[-1] == 65_899 and len(updates) == 659
    assert schedule_step(99, "report_code") == 98
    assert cosine_drop_fraction(schedule_step(99, "report_code"), 0.3, 65_918) == pytest.approx(
        0.3 * (1 + math.cos(math.pi * 98 / 65_918)) / 2
    )


@given(st.integers(1, 1000), st.integers(2, 100_000))
def test_google_timing_updates_every_delta_t_before_t_end(delta_t, t_end):
    steps = [s for s in range(t_end + delta_t + 1) if is_periodic_update(s, delta_t, t_end, "google")]
    assert steps == list(range(delta_t, t_end, delta_t))
    assert schedule_step(delta_t, "google") == delta_t


@given(st.integers(1, 1000), st.integers(2, 100_000))
def test_report_code_timing_updates_every_delta_t_before_t_end(delta_t, t_end):
    steps = [s for s in range(t_end + delta_t + 1) if is_periodic_update(s, delta_t, t_end)]
    assert steps == list(range(delta_t - 1, t_end, delta_t))


def test_drop_count_rounds_up_or_down():
    assert drop_count(0.3, 5, "ceil") == 2 and drop_count(0.3, 5, "floor") == 1
    assert drop_count(0.0, 5, "ceil") == 0 and drop_count(1.0, 5, "ceil") == 5
    assert drop_count(1e-9, 1000, "ceil") == 1  # any positive fraction drops a weight, as math.ceil does


def test_cubic_sparsity_is_zhu_gupta():
    assert cubic_sparsity(0, 0.9, 0, 100) == 0.0
    assert cubic_sparsity(50, 0.9, 0, 100) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_sparsity(100, 0.9, 0, 100) == 0.9
    assert cubic_sparsity(150, 0.9, 0, 100) == 0.9


def test_report_code_pruning_runs_from_step_700_to_65918_on_the_update_batches():
    start, end = pruning_window(CIFAR_LENGTH, 0.00796, 0.75, 100)
    assert (start, end) == (700, 65_918)  # start_when and end_when of the report's pruning configs
    steps = [s for s in range(88_000) if is_pruning_step(s, start, end, 100)]
    assert steps[0] == 99 and steps[-1] == 65_899
    first_pruning = next(s for s in steps if cubic_sparsity(schedule_step(s, "report_code"), 0.9, start, end) > 0)
    assert first_pruning == 799


def test_google_pruning_window_ends_on_a_pruning_step():
    start, end = pruning_window(1000, 0.1, 0.75, 30, "google")
    assert (start, end) == (100, 100 + 30 * 21)
    steps = [s for s in range(1000) if is_pruning_step(s, start, end, 30, "google")]
    assert steps[0] == 130 and steps[-1] == end


def test_training_length_multiplier_scales_steps_milestones_and_t_end():
    assert scaled_steps(250, 2) == 500
    assert scaled_milestones([30_000, 60_000], 2) == [60_000, 120_000]
    # The report's main.py multiplies end_when: 65,918 x 2 and x 3.
    assert end_step(schedule_length(500, 45_000, 128), 0.75) == 131_836
    assert end_step(schedule_length(750, 45_000, 128), 0.75) == 197_754
