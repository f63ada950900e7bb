import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rigl_repro.sparsity.masks import attach_masks, random_mask, top_k_mask, weight_shapes


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=60), st.data())
def test_top_k_mask_picks_exactly_k_of_the_largest_with_ties_to_the_lower_index(values, data):
    k = data.draw(st.integers(0, len(values)))
    scores = torch.tensor(values, dtype=torch.float32)
    mask = top_k_mask(scores, k)
    assert int(mask.sum()) == k
    if 0 < k < len(values):
        assert scores[mask].min() >= scores[~mask].max()
        threshold = scores[mask].min()
        tied = (scores == threshold).nonzero().flatten().tolist()
        chosen = [i for i in tied if mask[i]]
        assert chosen == tied[: len(chosen)]


@given(st.integers(1, 500), st.data())
def test_random_mask_has_exactly_k_active(size, data):
    k = data.draw(st.integers(0, size))
    generator = torch.Generator().manual_seed(size)
    assert int(random_mask(torch.Size([size]), k, generator, torch.device("cpu")).sum()) == k


def test_masks_are_boolean_buffers_on_conv_and_linear_weights_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    layers = attach_masks(model)
    assert [layer.name for layer in layers] == ["0.weight", "3.weight"]
    assert list(weight_shapes(model)) == ["0.weight", "3.weight"]
    state = model.state_dict()
    assert state["0.weight_mask"].dtype == torch.bool and "3.weight_mask" in state
    assert not any(key.startswith("1.") and key.endswith("mask") for key in state)
