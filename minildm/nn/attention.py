"""Multi-head attention, written out (Vaswani et al. 2017, eq. 1; LDM sec. 3.3).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V

Every attention in minildm goes through this one module:

- self-attention over image positions in the U-Net's `SpatialTransformer` and in the
  autoencoder's middle block: Q, K and V are all projections of the same tokens x;
- cross-attention in the U-Net (LDM sec. 3.3): Q = W_Q phi(z_t) from the image positions,
  K = W_K tau(y) and V = W_V tau(y) from the conditioning tokens tau(y) (the text);
- causal self-attention in the CLIP text encoder: a mask stops token i from looking at j > i.

Notation: B batch, T query tokens, L key/value tokens, nh heads, hs head size, d = hs.

`use_sdpa=True` swaps the written-out softmax for `F.scaled_dot_product_attention`,
PyTorch's fused kernel. The two compute the same function; tests/test_attention.py proves it
for values and gradients.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    use_sdpa: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(Q K^T / sqrt(d)) V for q (B, nh, T, hs), k and v (B, nh, L, hs).

    mask: boolean, broadcastable to (B, nh, T, L); True where a query may attend.
    Returns the output (B, nh, T, hs) and the attention weights (B, nh, T, L), which the
    fused path does not materialise (None).
    """
    if use_sdpa:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None
    # scores_ij = q_i . k_j / sqrt(d)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, nh, T, L)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # each row sums to 1 over the L keys
    return weights @ v, weights  # (B, nh, T, hs)


class MultiHeadAttention(nn.Module):
    """Self-attention (context=None) or cross-attention (context of shape (B, L, context_dim)).

    Q = x W_Q, K = c W_K, V = c W_V, split into `num_heads` heads of `head_dim` each, attended
    per head, concatenated and projected back to `query_dim` by W_O.

    qkv_bias: Stable Diffusion's U-Net has no bias on W_Q, W_K, W_V; CLIP and the
    autoencoder's attention have one. W_O always has a bias.
    Set `keep_attention_maps = True` to store the last weights (B, nh, T, L) in
    `attention_maps` for pictures (forces the written-out path).
    """

    def __init__(
        self,
        query_dim: int,
        num_heads: int,
        head_dim: int | None = None,
        context_dim: int | None = None,
        qkv_bias: bool = False,
        use_sdpa: bool = False,
    ):
        super().__init__()
        head_dim = head_dim if head_dim is not None else query_dim // num_heads
        if head_dim * num_heads == 0:
            raise ValueError(f"need num_heads >= 1 and head_dim >= 1, got {num_heads} and {head_dim}")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.context_dim = context_dim if context_dim is not None else query_dim
        inner_dim = num_heads * head_dim
        self.q_proj = nn.Linear(query_dim, inner_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(self.context_dim, inner_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(self.context_dim, inner_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(inner_dim, query_dim)
        self.use_sdpa = use_sdpa
        self.keep_attention_maps = False
        self.attention_maps: torch.Tensor | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, query_dim); context: (B, L, context_dim) or None; mask: bool (.., T, L)."""
        context = x if context is None else context
        if context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must have width {self.context_dim} (B, L, {self.context_dim}), "
                f"got shape {tuple(context.shape)}"
            )
        B, T, _ = x.shape
        q = self.split_heads(self.q_proj(x))  # (B, nh, T, hs)
        k = self.split_heads(self.k_proj(context))  # (B, nh, L, hs)
        v = self.split_heads(self.v_proj(context))  # (B, nh, L, hs)
        out, weights = attention(q, k, v, mask, use_sdpa=self.use_sdpa and not self.keep_attention_maps)
        if self.keep_attention_maps:
            self.attention_maps = weights.detach()
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T, nh*hs)
        return self.out_proj(out)


def causal_mask(T: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean (T, T) mask, True on and below the diagonal: token i sees tokens 0..i."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()
