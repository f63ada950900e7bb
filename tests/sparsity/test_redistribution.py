import pytest
from hypothesis import given
from hypothesis import strategies as st

from rigl_repro.sparsity.redistribution import allocate_proportionally


@st.composite
def allocation_problems(draw):
    capacities = draw(st.lists(st.integers(0, 500), min_size=1, max_size=10))
    weights = draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=len(capacities), max_size=len(capacities)))
    total = draw(st.integers(0, sum(capacities)))
    return total, weights, capacities


@given(allocation_problems())
def test_allocation_is_exact_and_within_capacity(problem):
    total, weights, capacities = problem
    allocation = allocate_proportionally(total, weights, capacities)
    assert sum(allocation) == total
    assert all(0 <= a <= c for a, c in zip(allocation, capacities))


def test_allocation_is_proportional_and_overflow_goes_to_the_others():
    assert allocate_proportionally(10, [1, 1], [100, 100]) == [5, 5]
    assert allocate_proportionally(10, [3, 1], [100, 100]) == [8, 2]  # 7.5 / 2.5: tie on remainder, lower index
    assert allocate_proportionally(10, [9, 1], [4, 100]) == [4, 6]
    assert allocate_proportionally(6, [0, 0, 0], [1, 2, 3]) == [1, 2, 3]


def test_allocation_rejects_more_than_fits():
    with pytest.raises(ValueError):
        allocate_proportionally(5, [1.0], [4])


def test_an_infinite_statistic_takes_what_it_can_hold():
    assert allocate_proportionally(10, [float("inf"), 1.0], [6, 100]) == [6, 4]
