"""The SpatialTransformer of the LDM U-Net (Rombach et al. 2022, sec. 3.3 and App. E.2.1).

Conditioning enters the U-Net through cross-attention (LDM sec. 3.3):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,
    Q = W_Q phi_i(z_t),   K = W_K tau_theta(y),   V = W_V tau_theta(y)

phi_i(z_t) are the image features at one U-Net level, flattened to H*W tokens; tau_theta(y) are
the text tokens (B, L, context_dim). One SpatialTransformer is

    h = GroupNorm(x);  h = flatten(h) W_in                      (B, H*W, C)
    h = h + SelfAttention(LayerNorm(h))
    h = h + CrossAttention(LayerNorm(h), context)
    h = h + FeedForward(LayerNorm(h))                            GEGLU, 4x wider
    out = x + unflatten(h W_out)                                 (B, C, H, W)

Without a context the second attention attends to the image tokens themselves, as in the LDM
code (`context = default(context, x)`) and diffusers. GEGLU (Shazeer 2020):
GEGLU(h) = a * GELU(g) where [a, g] = h W + b, split in that order.
W_in and W_out are linear maps on the channels (Stable Diffusion 1.x stores them as 1x1
convolutions, the same map; the converter reshapes them).
"""

import torch
import torch.nn.functional as F
from torch import nn

from minildm.nn.attention import MultiHeadAttention


class GEGLU(nn.Module):
    """h (.., dim) -> a * GELU(g), with [a, g] = h W + b: (.., inner_dim)."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, g = self.proj(h).chunk(2, dim=-1)
        # GEGLU(h) = a * GELU(g)
        return a * F.gelu(g)


class FeedForward(nn.Module):
    """GEGLU to 4*dim, then a linear map back to dim."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.geglu = GEGLU(dim, mult * dim)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.geglu(h))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: self-attention, cross-attention, feed-forward, each with a residual."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, context_dim: int | None, use_sdpa: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = MultiHeadAttention(dim, num_heads, head_dim, use_sdpa=use_sdpa)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = MultiHeadAttention(dim, num_heads, head_dim, context_dim=context_dim, use_sdpa=use_sdpa)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """h: (B, T, dim), context: (B, L, context_dim) or None -> (B, T, dim)."""
        h = h + self.attn1(self.norm1(h))
        h = h + self.attn2(self.norm2(h), context)
        return h + self.ff(self.norm3(h))


class SpatialTransformer(nn.Module):
    """(B, C, H, W) image features, attending to themselves and to a context -> (B, C, H, W)."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        head_dim: int,
        context_dim: int | None = None,
        depth: int = 1,
        norm_groups: int = 32,
        use_sdpa: bool = False,
    ):
        super().__init__()
        inner_dim = num_heads * head_dim
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(inner_dim, num_heads, head_dim, context_dim, use_sdpa) for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner_dim, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(B, H * W, C)  # (B, H*W, C): one token per pixel
        h = self.proj_in(h)  # (B, H*W, inner_dim)
        for block in self.blocks:
            h = block(h, context)
        h = self.proj_out(h)  # (B, H*W, C)
        h = h.view(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + h
