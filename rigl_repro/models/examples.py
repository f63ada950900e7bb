"""Two example models for 28x28 images (Fashion-MNIST), built from ``nn.Linear`` layers only (besides
LayerNorm), so that every weight matrix is one the sparse-inference conversion (``rigl_repro.inference``) can
replace: an MLP and a small vision transformer. They are not in the ``MODELS`` registry (no config names them);
``scripts/bench_inference.py`` and example scripts build them directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def mlp(num_classes: int = 10, hidden: Sequence[int] = (2048, 2048), in_features: int = 784) -> nn.Sequential:
    """A ReLU MLP on flattened images: ``in_features`` -> ``hidden``... -> ``num_classes``.

    The default widths (784 -> 2048 -> 2048 -> 10) are large enough that a CSR product at density 0.1 beats the
    dense product at batch 128 on one CPU thread; at 1024 the products are too small for the sparse kernel's
    overhead to pay off by 2x (docs/benchmarks.md, "Sparse inference on the CPU").
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class Attention(nn.Module):
    """Multi-head self-attention with explicit ``nn.Linear`` query, key, value and output projections (not
    ``nn.MultiheadAttention``, whose packed input projection is a bare parameter, not a Linear)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not a multiple of heads={heads}")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.out(attended.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """A pre-norm transformer encoder block: attention and a GELU MLP, each in a residual branch."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, dim * mlp_ratio), nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    """A small ViT: non-overlapping ``patch`` x ``patch`` patches embedded by one Linear, a class token and
    learned position embeddings, ``depth`` encoder blocks, a final LayerNorm and a Linear head on the class
    token."""

    def __init__(self, num_classes: int = 10, image_size: int = 28, channels: int = 1, patch: int = 4,
                 dim: int = 256, depth: int = 4, heads: int = 4, mlp_ratio: int = 4) -> None:  # fmt: skip
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size={image_size} is not a multiple of patch={patch}")
        self.patch = patch
        tokens = (image_size // patch) ** 2
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, channels, H, W) -> (batch, patches, channels * patch * patch), patches in row-major order."""
        batch, channels, height, width = images.shape
        p = self.patch
        grid = images.reshape(batch, channels, height // p, p, width // p, p)
        return grid.permute(0, 2, 4, 1, 3, 5).reshape(batch, (height // p) * (width // p), channels * p * p)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.patches(images))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        return self.head(self.norm(self.blocks(x))[:, 0])


def vit(num_classes: int = 10, image_size: int = 28, channels: int = 1, patch: int = 4, dim: int = 256,
        depth: int = 4, heads: int = 4, mlp_ratio: int = 4) -> VisionTransformer:  # fmt: skip
    """A small vision transformer for 28x28x1 images (defaults: 4x4 patches, 49 tokens and a class token,
    width 256, 4 blocks of 4 heads, MLP ratio 4: 3.2M weights, all but the embeddings in Linears)."""
    return VisionTransformer(num_classes, image_size, channels, patch, dim, depth, heads, mlp_ratio)


__all__ = ["Attention", "Block", "VisionTransformer", "mlp", "vit"]
