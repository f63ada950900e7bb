import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rigl_repro.sparsity.layouts import (
    CondensedFanIn,
    MaskLayout,
    NOfMSlots,
    bit_width,
    choose_layout,
    layout_from,
    packed_integers,
    unpacked_integers,
)
from rigl_repro.sparsity.structure import FanIn, NOfM

CPU = torch.device("cpu")
SHAPES = [(6, 10), (5, 3, 3, 3), (4, 7), (3, 1, 2, 5)]


def stored_bytes(parts):
    return sum(part.numel() for part in parts.values())


def round_trip(layout, mask):
    parts = layout.encode(mask)
    for suffix, (dtype, shape) in layout.parts(tuple(mask.shape)).items():
        assert parts[suffix].dtype == dtype and (shape is None or tuple(parts[suffix].shape) == shape), suffix
    assert set(parts) == set(layout.parts(tuple(mask.shape)))
    return layout.decode(parts, tuple(mask.shape))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SHAPES), st.floats(0.05, 0.9), st.integers(0, 2**16))
def test_a_constant_fan_in_mask_is_stored_condensed_and_reloads_exactly(shape, density, seed):
    generator = torch.Generator().manual_seed(seed)
    structure = FanIn()
    mask = structure.random(shape, structure.count(shape, density), generator, CPU)
    if mask.all():
        assert choose_layout(mask, "fan_in") == MaskLayout()  # a dense layer is outside any structure
        return
    layout = choose_layout(mask, "fan_in")
    assert layout == CondensedFanIn(int(mask.reshape(shape[0], -1).sum(dim=1)[0]))
    assert torch.equal(round_trip(layout, mask), mask)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SHAPES), st.sampled_from([(2, 4), (1, 3), (3, 8)]), st.integers(0, 2**16))
def test_an_n_m_mask_at_capacity_is_stored_as_positions_and_reloads_exactly(shape, n_m, seed):
    structure = NOfM(*n_m)
    mask = structure.random(shape, structure.count(shape, 0.5), torch.Generator().manual_seed(seed), CPU)
    layout = choose_layout(mask, "nm", *n_m)
    if mask.all() or not mask.any():
        assert layout == MaskLayout()
        return
    assert layout == NOfMSlots(*n_m)
    assert torch.equal(round_trip(layout, mask), mask)


def test_ablated_neurons_are_stored_as_neurons_without_inputs():
    mask = FanIn().random((8, 12), 8 * 3, torch.Generator().manual_seed(0), CPU)
    mask[[1, 6]] = False  # SRigL's ablation: no inputs at all
    layout = choose_layout(mask, "fan_in")
    assert layout == CondensedFanIn(3)
    parts = layout.encode(mask)
    assert parts["columns"].numel() == math.ceil(6 * 3 * bit_width(12) / 8)  # the live neurons' inputs only
    assert torch.equal(layout.decode(parts, (8, 12)), mask)


def test_masks_without_the_structure_are_stored_as_bits():
    unstructured = torch.zeros(4, 6, dtype=torch.bool)
    unstructured[0, :3] = unstructured[1, :1] = True
    assert choose_layout(unstructured, "fan_in") == MaskLayout()
    assert choose_layout(unstructured, "nm", 2, 4) == MaskLayout()
    assert choose_layout(unstructured, "unstructured") == MaskLayout()
    two_of_four = torch.tensor([[1, 1, 0, 0, 0, 1, 1, 0]], dtype=torch.bool)
    assert choose_layout(two_of_four, "nm", 2, 4) == NOfMSlots(2, 4)
    under_capacity = torch.tensor([[1, 0, 0, 0, 0, 1, 1, 0]], dtype=torch.bool)
    assert choose_layout(under_capacity, "nm", 2, 4) == MaskLayout()
    assert torch.equal(round_trip(MaskLayout(), unstructured), unstructured)


def test_a_2_4_layout_s_values_are_the_compressed_matrix_and_its_positions_the_metadata():
    weight = torch.arange(1.0, 17.0).reshape(2, 8)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1, 0, 1], [0, 0, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    parts = NOfMSlots(2, 4).encode(mask)
    assert torch.equal(weight[mask].reshape(2, 4), torch.tensor([[1.0, 3, 6, 8], [11, 12, 13, 14]]))
    assert unpacked_integers(parts["positions"], 8, 2).tolist() == [0, 2, 1, 3, 2, 3, 0, 1]
    assert parts["positions"].numel() == 2  # 2 bits per kept value: 8 values in 2 bytes


def test_the_condensed_layout_is_smaller_than_bits_at_low_density():
    shape = (64, 3 * 3 * 64)  # a WRN-22-2 convolution's filters
    structure = FanIn()
    for density, smaller in ((0.05, True), (0.5, False)):
        mask = structure.random(shape, structure.count(shape, density), torch.Generator().manual_seed(1), CPU)
        condensed = stored_bytes(choose_layout(mask, "fan_in").encode(mask))
        assert (condensed < stored_bytes(MaskLayout().encode(mask))) == smaller, density


@pytest.mark.parametrize("values, width", [([0, 1, 5, 7], 3), ([300, 0, 4095], 12), ([1], 1)])
def test_integers_pack_to_their_width_and_back(values, width):
    packed = packed_integers(torch.tensor(values), width)
    assert packed.numel() == math.ceil(len(values) * width / 8)
    assert unpacked_integers(packed, len(values), width).tolist() == values


def test_damaged_parts_are_refused_saying_what_is_wrong():
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1]], dtype=torch.bool)
    layout = CondensedFanIn(2)
    parts = layout.encode(mask)
    with pytest.raises(ValueError, match="do not hold"):
        layout.decode({**parts, "columns": parts["columns"][:0]}, (2, 4))
    repeated = {**parts, "columns": packed_integers(torch.tensor([0, 0, 1, 3]), 2)}
    with pytest.raises(ValueError, match="stored twice"):
        layout.decode(repeated, (2, 4))
    too_far = {**parts, "columns": packed_integers(torch.tensor([0, 1, 1, 4]), 3)}
    with pytest.raises(ValueError, match="do not hold"):  # 3-bit indices do not fit a fan-in of 4's 2 bits
        layout.decode(too_far, (2, 4))
    short_group = torch.tensor([[1, 0, 0, 1, 1, 1]], dtype=torch.bool)  # 2:4 then a 2-wide group holding 1
    nm = NOfMSlots(2, 4)
    with pytest.raises(ValueError, match="input index reaches 6"):  # the short group's second slot past its end
        nm.decode({"positions": packed_integers(torch.tensor([0, 3, 2]), 2)}, (1, 6))
    assert not nm.fits(short_group)


@pytest.mark.parametrize("description, message", [
    ({"layout": "fan_in"}, "not a mask layout"),
    ({"layout": "fan_in", "fan_in": 0}, "fan_in=0, not a positive integer"),
    ({"layout": "nm", "n": 4, "m": 4}, "not n < m"),
    ({"layout": "blocks"}, "not a mask layout"),
    ([1], "not an object"),
])  # fmt: skip
def test_layout_descriptions_are_checked(description, message):
    with pytest.raises(ValueError, match=message):
        layout_from(description)
    for layout in (MaskLayout(), CondensedFanIn(3), NOfMSlots(1, 3)):
        assert layout_from(layout.describe()) == layout
