import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigl_repro.errors import ConfigError
from rigl_repro.models import resnet50, wrn22_2
from rigl_repro.sparsity.distributions import (
    budgeted_layers,
    erdos_renyi_densities,
    layer_densities,
    nonzero_counts,
)
from rigl_repro.sparsity.masks import weight_shapes

conv_shapes = st.lists(
    st.tuples(st.integers(1, 64), st.integers(1, 64), st.sampled_from([1, 3, 5])).map(
        lambda t: (t[0], t[1], t[2], t[2])
    ),
    min_size=1,
    max_size=8,
)


def as_named(shapes):
    return {f"layer{i}.weight": shape for i, shape in enumerate(shapes)}


@settings(max_examples=200, deadline=None)
@given(conv_shapes, st.floats(0.01, 1.0), st.sampled_from(["uniform", "er", "erk"]))
def test_counts_meet_the_target_within_one_weight_per_layer(shapes, density, distribution):
    shapes = as_named(shapes)
    densities = layer_densities(distribution, shapes, density)
    counts = nonzero_counts(shapes, densities)
    budget = budgeted_layers(distribution, shapes)
    assert all(0.0 < d <= 1.0 + 1e-12 for d in densities.values())
    assert all(1 <= counts[n] <= math.prod(s) for n, s in shapes.items())
    target = density * sum(math.prod(shapes[n]) for n in budget)
    # Exact up to rounding (half a weight per layer) and the one-weight floor of very small layers.
    assert abs(sum(counts[n] for n in budget) - target) <= len(budget)


@settings(max_examples=100, deadline=None)
@given(conv_shapes, st.floats(0.01, 1.0), st.floats(0.2, 2.0))
def test_erk_solves_the_budget_and_dense_layers_have_the_largest_scores(shapes, density, power):
    shapes = as_named(shapes)
    densities = erdos_renyi_densities(shapes, density, power_scale=power)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(densities[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(density * total, rel=1e-9)
    score = {n: (sum(s) / math.prod(s)) ** power for n, s in shapes.items()}
    dense = [n for n, d in densities.items() if d == 1.0]
    sparse = [n for n in shapes if n not in dense]
    if dense and sparse:
        assert min(score[n] for n in dense) >= max(score[n] for n in sparse)


def test_erk_overflow_makes_the_report_layers_of_wrn22_2_dense():
    shapes = weight_shapes(wrn22_2())
    densities = layer_densities("erk", shapes, 0.1)
    dense = [name for name, d in densities.items() if d == 1.0]
    assert dense == ["conv1.weight", "blocks.0.shortcut.weight", "blocks.3.shortcut.weight", "fc.weight"]
    assert max(d for d in densities.values() if d < 1.0) < 1.0


def test_erk_overflow_on_a_hand_computed_example():
    # Scores: a = (10+1)/10 = 1.1, b = (100+100)/10^4 = 0.02. Density 0.5 of 10,010 weights = 5005.
    # One solve gives eps = 5005 / (1.1*10 + 0.02*10^4) = 23.7..., a would exceed 1, so a becomes dense
    # and b gets (5005 - 10) / 10^4 = 0.4995.
    shapes = {"a": (10, 1), "b": (100, 100)}
    assert erdos_renyi_densities(shapes, 0.5) == {"a": 1.0, "b": pytest.approx(0.4995)}


def test_er_ignores_kernel_dimensions_and_erk_uses_them():
    shapes = {"conv": (16, 16, 3, 3), "fc": (10, 16)}
    er, erk = layer_densities("er", shapes, 0.05), layer_densities("erk", shapes, 0.05)
    # ER scores the conv by channels only: (16+16)/256 = 0.125 vs fc 26/160 = 0.1625.
    assert er["conv"] / er["fc"] == pytest.approx(0.125 / 0.1625)
    assert erk["conv"] / erk["fc"] == pytest.approx((38 / 2304) / 0.1625)


def test_uniform_keeps_first_layer_dense_and_outside_the_budget():
    shapes = weight_shapes(resnet50())
    densities = layer_densities("uniform", shapes, 0.2)
    names = list(shapes)
    assert densities[names[0]] == 1.0
    assert {densities[n] for n in names[1:]} == {0.2}
    assert budgeted_layers("uniform", shapes) == names[1:]


def test_custom_map_is_checked_against_the_model():
    shapes = {"a.weight": (4, 4), "b.weight": (2, 4)}
    assert layer_densities("custom", shapes, 0.1, custom_densities={"a.weight": 0.5, "b.weight": 1.0}) == {
        "a.weight": 0.5,
        "b.weight": 1.0,
    }
    with pytest.raises(ConfigError, match="lacks: c.weight"):
        layer_densities("custom", shapes, 0.1, custom_densities={"a.weight": 0.5, "b.weight": 1, "c.weight": 1})
    with pytest.raises(ConfigError, match="no density for: b.weight"):
        layer_densities("custom", shapes, 0.1, custom_densities={"a.weight": 0.5})
    with pytest.raises(ConfigError, match=r"custom_densities\[a.weight\]"):
        layer_densities("custom", shapes, 0.1, custom_densities={"a.weight": 1.5, "b.weight": 1.0})
    with pytest.raises(ConfigError, match="needs masking.custom_densities"):
        layer_densities("custom", shapes, 0.1)


def test_unknown_distribution_names_the_choices():
    with pytest.raises(ConfigError, match="masking.distribution='erdos'.*uniform, er, erk, custom"):
        layer_densities("erdos", {"a": (2, 2)}, 0.5)
