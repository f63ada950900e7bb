"""nn.MultiheadAttention unpacked into four Linears (rigl_repro/inference/attention.py) computes what it does,
for every way it is called, and sparse inference then decides its projections like any Linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rigl_repro.inference import CsrLinear, UnpackedAttention, max_relative_error, sparsify_for_inference
from rigl_repro.sparsity.masks import MaskPolicy

E, HEADS, L, S, N = 16, 4, 5, 7, 3


def masked_attention(density: float = 0.3, seed: int = 0, **options) -> nn.MultiheadAttention:
    """A MultiheadAttention whose weight matrices carry random masks as the engine leaves them (weights zeroed
    outside, ``<name>_mask`` buffers), in eval mode."""
    torch.manual_seed(seed)
    attention = nn.MultiheadAttention(E, HEADS, **options)
    holder = nn.Module()
    holder.attention = attention
    with torch.no_grad():
        for _name, (module, local) in MaskPolicy().select(holder).items():
            weight = getattr(module, local)
            mask = torch.rand(weight.shape) < density
            module.register_buffer(f"{local}_mask", mask)
            weight.mul_(mask)
    return attention.eval()


def inputs(batch_first: bool, kdim: int = E, vdim: int = E, batched: bool = True):
    def shape(length: int, width: int) -> tuple[int, ...]:
        if not batched:
            return (length, width)
        return (N, length, width) if batch_first else (length, N, width)

    return torch.randn(shape(L, E)), torch.randn(shape(S, kdim)), torch.randn(shape(S, vdim))


def assert_same(reference: tuple, output: tuple) -> None:
    assert output[0].shape == reference[0].shape
    assert max_relative_error(reference[0], output[0]) <= 1e-5
    if reference[1] is None:
        assert output[1] is None
    else:
        assert output[1].shape == reference[1].shape
        assert max_relative_error(reference[1], output[1]) <= 1e-5


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights, average", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"kdim": 6, "vdim": 10}])
def test_it_computes_what_multihead_attention_does(batch_first, need_weights, average, options):
    attention = masked_attention(batch_first=batch_first, **options)
    unpacked = UnpackedAttention(attention)
    query, key, value = inputs(batch_first, options.get("kdim", E), options.get("vdim", E))
    padding = torch.rand(N, S) < 0.3
    padding[:, 0] = False  # every query keeps a key to attend
    causal = torch.triu(torch.ones(L, S, dtype=torch.bool), 1)
    masks = [{}, {"key_padding_mask": padding}, {"attn_mask": causal}, {"attn_mask": torch.randn(L, S)},
             {"attn_mask": torch.randn(N * HEADS, L, S), "key_padding_mask": padding.float() * -1e4},
             {"attn_mask": causal, "is_causal": True}]  # fmt: skip
    with torch.inference_mode():
        for extra in masks:
            call = dict(need_weights=need_weights, average_attn_weights=average, **extra)
            assert_same(attention(query, key, value, **call), unpacked(query, key, value, **call))


def test_self_attention_on_one_unbatched_sequence():
    attention = masked_attention()
    x = inputs(False, batched=False)[0]
    with torch.inference_mode():
        assert_same(attention(x, x, x), UnpackedAttention(attention)(x, x, x))
        assert_same(attention(x, x, x, need_weights=False), UnpackedAttention(attention)(x, x, x, need_weights=False))


def test_the_projections_keep_the_masks_and_the_causal_hint_needs_its_mask():
    attention = masked_attention()
    unpacked = UnpackedAttention(attention)
    active = int(attention.in_proj_weight_mask.sum())
    projections = (unpacked.q_proj, unpacked.k_proj, unpacked.v_proj)
    assert sum(int(torch.count_nonzero(p.weight)) for p in projections) == active
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        unpacked(*inputs(True), is_causal=True)


@pytest.mark.parametrize("batch_first", [True, False])
def test_torchs_transformer_layers_take_the_unpacked_attention(batch_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, HEADS, 32, batch_first=batch_first)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(N, L, E) if batch_first else torch.randn(L, N, E)
    converted, decisions = sparsify_for_inference(model, batch_size=N, force="csr")
    assert len(decisions) == 2 * 6  # per layer: q, k, v, out and the two feed-forward Linears
    with torch.inference_mode():  # torch's fused fast path is declined (no packed projection), not crashed into
        assert max_relative_error(model(x), converted(x)) <= 1e-5


def test_masks_of_other_dtypes_are_refused_as_multihead_attention_refuses_them():
    attention = masked_attention(batch_first=True)
    query, key, value = inputs(True)
    with pytest.raises(TypeError, match="only bool and floating types of masks"):
        UnpackedAttention(attention)(query, key, value, attn_mask=torch.zeros(L, S, dtype=torch.uint8))


def test_what_cannot_be_unpacked_is_refused_and_left_dense_with_a_warning():
    with pytest.raises(ValueError, match="add_bias_kv=True"):
        UnpackedAttention(nn.MultiheadAttention(E, HEADS, add_bias_kv=True))
    with pytest.raises(ValueError, match="add_zero_attn=True"):
        UnpackedAttention(nn.MultiheadAttention(E, HEADS, add_zero_attn=True))
    model = nn.Sequential()
    model.attention = nn.MultiheadAttention(E, HEADS, add_zero_attn=True)
    with pytest.warns(RuntimeWarning, match=r"attention: MultiheadAttention not converted \(add_zero_attn=True\)"):
        converted, decisions = sparsify_for_inference(model, batch_size=2, force="csr")
    assert type(converted.attention) is nn.MultiheadAttention and decisions == []


class Encoder(nn.Module):
    """A transformer layer as users write one: nn.MultiheadAttention, then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = masked_attention(batch_first=True)
        self.head = nn.Linear(E, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attention(x, x, x, need_weights=False)
        return self.head(out + x)


def test_sparse_inference_converts_the_attention_projections():
    model = Encoder().eval()
    x = torch.randn(N, L, E)
    converted, decisions = sparsify_for_inference(model, batch_size=N, force="csr", example_input=x)
    names = ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj", "head"]
    assert [d.name for d in decisions] == names
    assert all(isinstance(converted.get_submodule(name), CsrLinear) for name in names)
    assert all(d.rows == N * L for d in decisions[:4])
    assert type(model.attention) is nn.MultiheadAttention  # the original is untouched
    with torch.inference_mode():
        assert max_relative_error(model(x), converted(x)) <= 1e-5
    timed, timed_decisions = sparsify_for_inference(model, batch_size=N, example_input=x, warmup=0, repeats=1)
    assert [d.name for d in timed_decisions] == names
    with torch.inference_mode():
        assert max_relative_error(model(x), timed(x)) <= 1e-5
