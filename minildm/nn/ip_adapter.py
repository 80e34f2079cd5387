"""IP-Adapter's decoupled cross-attention: image prompts for a text-to-image U-Net (Ye et al. 2023, sec. 3.2).

A reference image's CLIP embedding c_i (B, D_img) is projected to N extra context tokens (sec. 3.2.1):

    c_i' = LayerNorm( reshape(c_i W_proj + b, (N, d)) )                  (B, N, d)

Each cross-attention of the frozen U-Net keeps its text attention (LDM sec. 3.3) and gains a second
attention over the image tokens, with new key and value projections W'_K, W'_V (no bias) and the
same query (sec. 3.2.2; lambda at inference, sec. 3.2.4):

    Z  = Attention(Q, K, V),    Q = x W_Q, K = c_t W_K, V = c_t W_V        the text, as before
    Z' = Attention(Q, K', V'),  K' = c_i' W'_K, V' = c_i' W'_V             the image prompt
    Z_new = Z + lambda Z'        then the output projection W_O, as before

lambda (`scale`) sets how strongly the image prompt steers; lambda = 0 gives back the text-only
model exactly. Only W_proj, the LayerNorm and every W'_K, W'_V are trained; W'_K, W'_V start as
copies of W_K, W_V (as the authors' training script does).

The image tokens travel with the text: the U-Net's context is [c_t; c_i'] (B, L + N, d), and each
`DecoupledCrossAttention` splits off its last N tokens (the authors' original code does the same),
so the U-Net itself does not change. diffusers computes the same in `IPAdapterAttnProcessor`.
"""

import torch
from torch import nn

from minildm.nn.attention import MultiHeadAttention, attention


class ImageProjection(nn.Module):
    """c_i (B, image_embed_dim) -> N image tokens (B, N, context_dim) = LayerNorm(reshape(c_i W + b))."""

    def __init__(self, image_embed_dim: int, context_dim: int, num_tokens: int = 4):
        super().__init__()
        if min(image_embed_dim, context_dim, num_tokens) < 1:
            raise ValueError(
                f"image_embed_dim, context_dim and num_tokens must be >= 1, "
                f"got {image_embed_dim}, {context_dim}, {num_tokens}"
            )
        self.num_tokens, self.context_dim = num_tokens, context_dim
        self.proj = nn.Linear(image_embed_dim, num_tokens * context_dim)
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        if image_embeds.dim() != 2 or image_embeds.shape[1] != self.proj.in_features:
            raise ValueError(
                f"image_embeds must be (B, {self.proj.in_features}), got shape {tuple(image_embeds.shape)}"
            )
        tokens = self.proj(image_embeds).view(len(image_embeds), self.num_tokens, self.context_dim)  # (B, N, d)
        return self.norm(tokens)


class DecoupledCrossAttention(nn.Module):
    """Wraps a cross-attention (a `MultiHeadAttention`, left as it is) and adds W'_K, W'_V for N image tokens.

    forward(x (B, T, query_dim), context (B, L + N, context_dim)) -> (B, T, query_dim): the first L
    context tokens are the text, the last N the image prompt.
    """

    def __init__(self, cross_attention: MultiHeadAttention, num_tokens: int = 4, scale: float = 1.0):
        super().__init__()
        if not isinstance(cross_attention, MultiHeadAttention):
            raise TypeError(f"cross_attention must be a MultiHeadAttention, got {type(cross_attention).__name__}")
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.cross_attention = cross_attention
        self.num_tokens, self.scale = num_tokens, scale
        inner_dim = cross_attention.num_heads * cross_attention.head_dim
        self.k_ip = nn.Linear(cross_attention.context_dim, inner_dim, bias=False)
        self.v_ip = nn.Linear(cross_attention.context_dim, inner_dim, bias=False)
        with torch.no_grad():  # W'_K = W_K, W'_V = W_V at the start
            self.k_ip.weight.copy_(cross_attention.k_proj.weight)
            self.v_ip.weight.copy_(cross_attention.v_proj.weight)
        self.keep_attention_maps = False  # as MultiHeadAttention: store the text attention weights
        self.attention_maps: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask: bool (.., T, L) over the text tokens only; the image tokens are always attended."""
        attn = self.cross_attention
        if context.dim() != 3 or context.shape[1] <= self.num_tokens or context.shape[2] != attn.context_dim:
            raise ValueError(
                f"context must be text and {self.num_tokens} image tokens, (B, L + {self.num_tokens}, "
                f"{attn.context_dim}) with L >= 1, got shape {tuple(context.shape)}"
            )
        B, T, _ = x.shape
        text, image = context[:, : -self.num_tokens], context[:, -self.num_tokens :]  # (B, L, d), (B, N, d)
        use_sdpa = attn.use_sdpa and not self.keep_attention_maps
        q = attn.split_heads(attn.q_proj(x))  # (B, nh, T, hs)
        # Z = Attention(Q, K, V), K = c_t W_K, V = c_t W_V
        k, v = attn.split_heads(attn.k_proj(text)), attn.split_heads(attn.v_proj(text))  # (B, nh, L, hs)
        text_out, weights = attention(q, k, v, mask, use_sdpa=use_sdpa)  # (B, nh, T, hs)
        if self.keep_attention_maps:
            self.attention_maps = weights.detach()
        # Z' = Attention(Q, K', V'), K' = c_i' W'_K, V' = c_i' W'_V
        k_ip, v_ip = attn.split_heads(self.k_ip(image)), attn.split_heads(self.v_ip(image))  # (B, nh, N, hs)
        image_out, _ = attention(q, k_ip, v_ip, use_sdpa=use_sdpa)  # (B, nh, T, hs)
        # Z_new = Z + lambda Z'
        out = text_out + self.scale * image_out
        out = out.transpose(1, 2).reshape(B, T, attn.num_heads * attn.head_dim)  # (B, T, nh*hs)
        return attn.out_proj(out)


def add_ip_adapter(model: nn.Module, num_tokens: int = 4, scale: float = 1.0) -> list[str]:
    """Wrap every cross-attention `attn2` of `model`'s TransformerBlocks (the U-Net's) in a
    DecoupledCrossAttention; returns their names. The model then expects context [c_t; c_i']."""
    names = [name for name, module in model.named_modules() if name.endswith("attn2")]
    if not names:
        raise ValueError("model has no cross-attention named 'attn2' (a TransformerBlock's) to add an IP-Adapter to")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        cross_attention = getattr(parent, child)
        if isinstance(cross_attention, DecoupledCrossAttention):
            raise ValueError(f"{name} already has an IP-Adapter")
        setattr(parent, child, DecoupledCrossAttention(cross_attention, num_tokens, scale))
    return names


def set_ip_adapter_scale(model: nn.Module, scale: float) -> None:
    """Set lambda in every DecoupledCrossAttention of `model` (0 turns the image prompt off)."""
    for module in model.modules():
        if isinstance(module, DecoupledCrossAttention):
            module.scale = scale
