"""CLIP's text transformer tau_theta (Radford et al. 2021, sec. 2.4; LDM sec. 3.3).

Token ids y (B, L) become per-token hidden states tau_theta(y) (B, L, width), the context that
the U-Net's cross-attention reads (K = W_K tau_theta(y), V = W_V tau_theta(y)), and one pooled
vector per text (B, width), the hidden state at the end token:

    h_0 = E_tok[y] + E_pos[0..L-1]
    h_l = h_{l-1} + MHA(LN_1(h_{l-1}), causal mask)          pre-LayerNorm block, l = 1..num_layers
    h_l = h_l + W_2 act(W_1 LN_2(h_l) + b_1) + b_2
    hidden = LN_final(h_num_layers)
    pooled = hidden[b, position of the end token in y_b]                 pool = "eos" (CLIP)
    pooled = mean of hidden[b, 0..position of the end token in y_b]      pool = "mean"

The causal mask lets token i attend to tokens 0..i only (like GPT-2), so the hidden state at the
end token has read the whole text and none of the zero padding that follows it.

Which position is "the end token": CLIP takes `argmax(y)`, since the end token has the largest id
in its vocabulary (and in any `CLIPTokenizer` vocabulary). transformers' `CLIPTextModel` does the
same when its config has the legacy `eos_token_id == 2` (as `openai/clip-vit-large-patch14`, the
encoder of Stable Diffusion 1.x, does); otherwise it takes the first position holding
`eos_token_id`. `TextEncoderConfig.eos_token_id` picks the same way: None means argmax, an id
means its first occurrence.

Optional projection (`projection_dim`): CLIP maps the pooled vector into the joint text-image
space, text_embeds = pooled W_proj (no bias; transformers' `CLIPTextModelWithProjection`, the
second text encoder of SDXL). `project(pooled)` applies it; forward returns (hidden, pooled) either way.

Mean pooling (`pool="mean"`, not CLIP's): the average of the states from the start token to the
end token. Under the causal mask the state at a word has read only the words before it, so in
"a large orange circle" the state at "orange" is the same whatever shape follows, and the mean
keeps it; the end-token state is one nonlinear function of the whole caption. Whether that helps
a model draw pairs of words it never saw together is measured in docs/EXPERIMENTS.md.

activation: "quick_gelu" x * sigmoid(1.702 x) in OpenAI's CLIP (and SD 1.x); "gelu" in OpenCLIP's
ViT-H/14 (SD 2.x).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minildm.nn.attention import MultiHeadAttention, causal_mask


@dataclass
class TextEncoderConfig:
    vocab_size: int = 49408
    context_length: int = 77  # number of position embeddings: the longest input
    width: int = 512
    num_layers: int = 12
    num_heads: int = 8
    mlp_ratio: float = 4.0  # hidden width of the MLP = mlp_ratio * width, unless mlp_width is set
    mlp_width: int | None = None  # the exact hidden width of the MLP (a converted model's intermediate_size)
    activation: str = "quick_gelu"  # "quick_gelu" or "gelu"
    eos_token_id: int | None = None  # None: pool at argmax(ids); an id: at its first occurrence
    pool: str = "eos"  # the pooled vector: "eos" the end token's state (CLIP), "mean" the mean up to it
    layer_norm_eps: float = 1e-5
    projection_dim: int | None = None  # width of text_embeds = pooled W_proj; None: no projection
    use_sdpa: bool = False  # PyTorch's fused attention (same function, see nn/attention.py)

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "width", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ValueError(f"width must be divisible by num_heads, got {self.width} and {self.num_heads}")
        if self.pool not in ("eos", "mean"):
            raise ValueError(f"pool must be 'eos' or 'mean', got {self.pool!r}")
        if self.activation not in ("quick_gelu", "gelu"):
            raise ValueError(f"activation must be 'quick_gelu' or 'gelu', got {self.activation!r}")
        if not (math.isfinite(self.mlp_ratio) and self.mlp_ratio > 0):
            raise ValueError(f"mlp_ratio must be a finite number > 0, got {self.mlp_ratio}")


def init_blocks(blocks: nn.ModuleList) -> None:
    """CLIP's initialisation of its transformer blocks (text and vision towers alike): every
    projection N(0, 0.02^2), biases 0."""
    for block in blocks:
        for linear in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj, block.attn.out_proj):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        for linear in (block.mlp.fc1, block.mlp.fc2):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    # quick_gelu(x) = x * sigmoid(1.702 x), OpenAI's approximation of GELU
    return x * torch.sigmoid(1.702 * x)


class TextMLP(nn.Module):
    def __init__(self, width: int, hidden: int, activation: str):
        super().__init__()
        if activation not in ("quick_gelu", "gelu"):
            raise ValueError(f"activation must be 'quick_gelu' or 'gelu', got {activation!r}")
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.activation = quick_gelu if activation == "quick_gelu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # W_2 act(W_1 x + b_1) + b_2
        return self.fc2(self.activation(self.fc1(x)))


class TextTransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.attn = MultiHeadAttention(config.width, config.num_heads, qkv_bias=True, use_sdpa=config.use_sdpa)
        self.ln_2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        hidden = config.mlp_width if config.mlp_width is not None else int(config.mlp_ratio * config.width)
        self.mlp = TextMLP(config.width, hidden, config.activation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask=mask)
        return x + self.mlp(self.ln_2(x))


class TextEncoder(nn.Module):
    """tau_theta: token ids (B, L), L <= context_length -> hidden (B, L, width), pooled (B, width)."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        if config.width % config.num_heads != 0:
            raise ValueError(f"width must be divisible by num_heads, got {config.width} and {config.num_heads}")
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.blocks = nn.ModuleList([TextTransformerBlock(config) for _ in range(config.num_layers)])
        self.ln_final = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.text_projection = (
            None if config.projection_dim is None else nn.Linear(config.width, config.projection_dim, bias=False)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """CLIP's initialisation: N(0, 0.02) tokens, N(0, 0.01) positions, N(0, 0.02) linears,
        N(0, 1/width) projection."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.01)
        init_blocks(self.blocks)
        if self.text_projection is not None:
            nn.init.normal_(self.text_projection.weight, std=self.config.width**-0.5)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, width) -> text_embeds (B, projection_dim) = pooled W_proj."""
        if self.text_projection is None:
            raise ValueError("this TextEncoder has projection_dim=None: it has no text projection to apply")
        return self.text_projection(pooled)

    def pool_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Position of the end token in each row (B,): argmax of the ids, or first eos_token_id."""
        if self.config.eos_token_id is None:
            return tokens.argmax(dim=-1)
        is_eos = tokens == self.config.eos_token_id  # (B, L)
        if not bool(is_eos.any(dim=-1).all()):
            raise ValueError(f"every row of tokens must contain eos_token_id={self.config.eos_token_id}")
        return is_eos.int().argmax(dim=-1)  # argmax returns the first maximum

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a LongTensor (B, L), got {tokens.dtype} of shape {tuple(tokens.shape)}")
        B, L = tokens.shape
        if L > self.config.context_length:
            raise ValueError(f"at most context_length={self.config.context_length} tokens, got {L}")
        # h_0 = E_tok[y] + E_pos[0..L-1]
        x = self.token_embedding(tokens) + self.position_embedding[:L]  # (B, L, width)
        mask = causal_mask(L, device=tokens.device)  # (L, L), True where i may attend to j <= i
        for block in self.blocks:
            x = block(x, mask)
        hidden = self.ln_final(x)  # (B, L, width)
        end = self.pool_positions(tokens)  # (B,)
        if self.config.pool == "eos":
            pooled = hidden[torch.arange(B, device=tokens.device), end]  # (B, width)
        else:  # mean over positions 0..end, padding after the end token left out
            keep = torch.arange(L, device=tokens.device)[None, :] <= end[:, None]  # (B, L)
            pooled = (hidden * keep[..., None]).sum(dim=1) / keep.sum(dim=1, keepdim=True)  # (B, width)
        return hidden, pooled
