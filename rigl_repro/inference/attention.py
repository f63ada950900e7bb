"""``nn.MultiheadAttention`` unpacked into four ``nn.Linear`` projections, so that sparse inference can give
each its own layout.

``nn.MultiheadAttention`` keeps its input projections as bare parameters (one packed (3E, E) matrix, or three
when the key and value widths differ) and multiplies them inside ``F.multi_head_attention_forward``: no module
to replace. ``UnpackedAttention`` computes the same function in eval mode from ``q_proj``, ``k_proj``,
``v_proj`` and ``out_proj``, plain Linears holding the masked weights (``in_proj_weight`` times
``in_proj_weight_mask``, split by rows), so that ``sparsify_for_inference`` decides their layouts as it does
any Linear's. Its ``forward`` takes ``nn.MultiheadAttention``'s arguments and returns what it returns.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _masked(module: nn.Module, name: str) -> torch.Tensor:
    """Parameter ``name`` of ``module`` times its mask buffer (``<name>_mask``) where there is one."""
    weight = getattr(module, name).detach()
    mask = getattr(module, f"{name}_mask", None)
    return weight * mask.to(weight.dtype) if isinstance(mask, torch.Tensor) else weight


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                      dtype=weight.dtype)  # fmt: skip
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias.detach())
    return layer


def unsupported(attention: nn.MultiheadAttention) -> str | None:
    """Why ``attention`` cannot be unpacked (learned key/value biases, zero attention), or None."""
    if attention.bias_k is not None or attention.bias_v is not None:
        return "add_bias_kv=True"
    if attention.add_zero_attn:
        return "add_zero_attn=True"
    return None


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True: not attended) as 0 / -inf, a float mask as it is; other dtypes are refused, as
    ``nn.MultiheadAttention`` refuses them."""
    if mask is not None and mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"only bool and floating types of masks are supported, got {mask.dtype}")
    if mask is None or mask.dtype != torch.bool:
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class UnpackedAttention(nn.Module):
    """``nn.MultiheadAttention`` in eval mode, with its projections as the Linears ``q_proj``, ``k_proj``,
    ``v_proj`` and ``out_proj`` (module docstring). Attention dropout is not applied (eval mode)."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        reason = unsupported(attention)
        if reason is not None:
            raise ValueError(f"cannot unpack a MultiheadAttention with {reason}")
        self.embed_dim, self.num_heads = attention.embed_dim, attention.num_heads
        self.head_dim = attention.head_dim
        self.batch_first = attention.batch_first
        if attention.in_proj_weight is not None:
            weights = _masked(attention, "in_proj_weight").chunk(3)
        else:
            weights = tuple(_masked(attention, f"{part}_proj_weight") for part in "qkv")
        biases = (None,) * 3 if attention.in_proj_bias is None else attention.in_proj_bias.chunk(3)
        self.q_proj, self.k_proj, self.v_proj = (_linear(w, b) for w, b in zip(weights, biases))
        self.out_proj = _linear(_masked(attention.out_proj, "weight"), attention.out_proj.bias)
        # What nn.TransformerEncoderLayer and nn.TransformerEncoder read of their attention before taking
        # torch's fused fast path: this module has no packed projection, so they take the path that calls it.
        self.in_proj_weight = self.in_proj_bias = None
        self._qkv_same_embed_dim = False

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if is_causal and attn_mask is None:  # as nn.MultiheadAttention: the flag is a hint about attn_mask
            raise RuntimeError("Need attn_mask if specifying the is_causal hint")
        batched = query.dim() == 3
        if not batched:  # (L, E): one sequence
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, target, source = query.shape[0], query.shape[1], key.shape[1]
        heads, head_dim = self.num_heads, self.head_dim

        def split(x: torch.Tensor, length: int) -> torch.Tensor:  # (N, L, E) -> (N, heads, L, head_dim)
            return x.reshape(batch, length, heads, head_dim).transpose(1, 2)

        q, k, v = split(self.q_proj(query), target), split(self.k_proj(key), source), split(self.v_proj(value), source)
        mask = _additive(attn_mask, q.dtype)
        if mask is not None:
            mask = mask.reshape(batch, heads, target, source) if mask.dim() == 3 else mask.reshape(1, 1, target, source)
        padding = _additive(key_padding_mask, q.dtype)
        if padding is not None:
            padding = padding.reshape(batch, 1, 1, source)
            mask = padding if mask is None else mask + padding
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, target, self.embed_dim))
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        return (out if self.batch_first else out.transpose(0, 1)), weights


__all__ = ["UnpackedAttention", "unsupported"]
