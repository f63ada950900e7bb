import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rigl_repro.sparsity.redistribution import allocate, allocate_capped, allocate_proportionally


@st.composite
def allocation_problems(draw):
    capacities = draw(st.lists(st.integers(0, 500), min_size=1, max_size=10))
    weights = draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=len(capacities), max_size=len(capacities)))
    total = draw(st.integers(0, sum(capacities)))
    return total, weights, capacities


def reference_loop(total: float, weights: list[float], capacities: list[int]) -> list[float]:
    """The report code's loop (Masking.calc_redistributed_densities), with the exact total in place of its
    rounded share: each layer wants share x total, at most 0.99 x its free positions; the overflow is spread
    in equal parts over all layers, round after round."""
    norm = sum(weights)
    regrowth: dict[int, float] = {}
    residual, mean_residual, rounds = 9999.0, 0.0, 0
    while residual > 0 and rounds < 1000:
        residual = 0.0
        for i, capacity in enumerate(capacities):
            wanted = regrowth[i] if i in regrowth else weights[i] / norm * total
            wanted += mean_residual
            if wanted > 0.99 * capacity:
                regrowth[i] = 0.99 * capacity
                residual += wanted - regrowth[i]
            else:
                regrowth[i] = wanted
        mean_residual = residual / len(regrowth)
        rounds += 1
    return [regrowth[i] for i in range(len(capacities))]


@pytest.mark.parametrize("allocator", [allocate_capped, allocate_proportionally])
@given(problem=allocation_problems())
def test_allocation_is_exact_and_within_capacity(allocator, problem):
    total, weights, capacities = problem
    allocation = allocator(total, weights, capacities)
    assert sum(allocation) == total
    assert all(0 <= a <= c for a, c in zip(allocation, capacities))


@given(allocation_problems())
def test_capped_allocation_is_the_report_codes_rule_within_one_weight_per_layer(problem):
    total, weights, capacities = problem
    assume(sum(weights) > 0 and total <= 0.99 * sum(capacities))
    reference = reference_loop(total, weights, capacities)
    ours = allocate_capped(total, weights, capacities)
    assert all(abs(a - r) <= 1 + 1e-6 for a, r in zip(ours, reference)), (ours, reference)


def test_a_hand_worked_redistribution():
    # Shares 0.6 / 0.3 / 0.1 of 100 regrown weights; the first layer has 50 free positions, so at most 49.5.
    # The report's rule gives its overflow, 10.5, in equal parts to the others: 49.5, 35.25, 15.25. Integers
    # that keep the total: 50, 35, 15. Proportional water-filling splits the 50 left as 3:1 instead.
    assert reference_loop(100, [0.6, 0.3, 0.1], [50, 100, 100]) == pytest.approx([49.5, 35.25, 15.25])
    assert allocate("capped", 100, [0.6, 0.3, 0.1], [50, 100, 100]) == [50, 35, 15]
    assert allocate("proportional", 100, [0.6, 0.3, 0.1], [50, 100, 100]) == [50, 38, 12]


def test_proportional_allocation_and_overflow_go_to_the_others():
    assert allocate_proportionally(10, [1, 1], [100, 100]) == [5, 5]
    assert allocate_proportionally(10, [3, 1], [100, 100]) == [8, 2]  # 7.5 / 2.5: tie on remainder, lower index
    assert allocate_proportionally(10, [9, 1], [4, 100]) == [4, 6]
    assert allocate_proportionally(6, [0, 0, 0], [1, 2, 3]) == [1, 2, 3]


def test_capped_allocation_fills_every_layer_when_the_caps_cannot_hold_the_total():
    assert allocate_capped(30, [1, 1, 1], [10, 10, 10]) == [10, 10, 10]


@pytest.mark.parametrize("allocator", [allocate_capped, allocate_proportionally])
def test_allocation_rejects_more_than_fits(allocator):
    with pytest.raises(ValueError):
        allocator(5, [1.0], [4])


def test_an_infinite_statistic_takes_what_it_can_hold():
    assert allocate_proportionally(10, [float("inf"), 1.0], [6, 100]) == [6, 4]
    assert allocate_capped(10, [float("inf"), 1.0], [6, 100]) == [6, 4]  # 5.94 + 4.06, rounded
