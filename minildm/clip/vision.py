"""CLIP's image encoder, a vision transformer (Radford et al. 2021, sec. 2.4; Dosovitskiy et al. 2021, eq. 1-4).

An image x (B, 3, H, W) is cut into P x P patches, each patch is a token, and a learned class
token is put in front; the transformer reads all of them and the class token's final state is
the image's one vector. CLIP's layout (OpenAI's `VisionTransformer`, transformers'
`CLIPVisionModelWithProjection`), with N = (H/P)(W/P) patches:

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos          E: a PxP conv with stride P, no bias
    z_0 = LN_pre(z_0)                                       CLIP's extra "pre_layrnorm"
    z_l = z_{l-1} + MHA(LN_1(z_{l-1}))                      pre-LayerNorm block, l = 1..num_layers
    z_l = z_l + W_2 act(W_1 LN_2(z_l) + b_1) + b_2
    pooled = LN_post(z_L[:, 0])                             the class token only
    image_embeds = pooled W_proj                            no bias, into the joint text-image space

The blocks are those of the text encoder without the causal mask: every patch sees every patch.
forward returns (hidden, pooled) as `TextEncoder` does: hidden = z_L (B, 1+N, width), the states
before LN_post (transformers' `last_hidden_state`); `project(pooled)` gives image_embeds.
"""

from dataclasses import dataclass

import torch
from torch import nn

from minildm.nn.attention import MultiHeadAttention
from minildm.text.text_encoder import TextMLP, init_blocks


@dataclass
class VisionEncoderConfig:
    image_size: int = 32  # H = W
    patch_size: int = 4  # P: N = (image_size / P)^2 patches
    in_channels: int = 3
    width: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0  # hidden width of the MLP = mlp_ratio * width, unless mlp_width is set
    mlp_width: int | None = None  # the exact hidden width of the MLP (a converted model's intermediate_size)
    activation: str = "quick_gelu"  # "quick_gelu" (OpenAI's CLIP) or "gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int | None = None  # width of image_embeds = pooled W_proj; None: no projection
    use_sdpa: bool = False  # PyTorch's fused attention (same function, see nn/attention.py)

    def __post_init__(self):
        for name in ("image_size", "patch_size", "in_channels", "width", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size must be divisible by patch_size, got {self.image_size} and {self.patch_size}")
        if self.width % self.num_heads:
            raise ValueError(f"width must be divisible by num_heads, got {self.width} and {self.num_heads}")
        if self.activation not in ("quick_gelu", "gelu"):
            raise ValueError(f"activation must be 'quick_gelu' or 'gelu', got {self.activation!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class VisionTransformerBlock(nn.Module):
    """Pre-LayerNorm block without a mask: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: VisionEncoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.attn = MultiHeadAttention(config.width, config.num_heads, qkv_bias=True, use_sdpa=config.use_sdpa)
        self.ln_2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        hidden = config.mlp_width if config.mlp_width is not None else int(config.mlp_ratio * config.width)
        self.mlp = TextMLP(config.width, hidden, config.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisionEncoder(nn.Module):
    """Images (B, in_channels, image_size, image_size) -> hidden (B, 1+N, width), pooled (B, width)."""

    def __init__(self, config: VisionEncoderConfig):
        super().__init__()
        self.config = config
        self.patch_embedding = nn.Conv2d(
            config.in_channels, config.width, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        self.class_embedding = nn.Parameter(torch.empty(config.width))
        self.position_embedding = nn.Parameter(torch.empty(config.num_patches + 1, config.width))
        self.ln_pre = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList([VisionTransformerBlock(config) for _ in range(config.num_layers)])
        self.ln_post = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.visual_projection = (
            None if config.projection_dim is None else nn.Linear(config.width, config.projection_dim, bias=False)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """CLIP's initialisation: N(0, 1/width) class token, positions and projection; N(0, 0.02) linears."""
        scale = self.config.width**-0.5
        nn.init.normal_(self.class_embedding, std=scale)
        nn.init.normal_(self.position_embedding, std=scale)
        init_blocks(self.blocks)
        if self.visual_projection is not None:
            nn.init.normal_(self.visual_projection.weight, std=scale)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, width) -> image_embeds (B, projection_dim) = pooled W_proj."""
        if self.visual_projection is None:
            raise ValueError("this VisionEncoder has projection_dim=None: it has no visual projection to apply")
        return self.visual_projection(pooled)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config
        expected = (config.in_channels, config.image_size, config.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}")
        B = images.shape[0]
        patches = self.patch_embedding(images)  # (B, width, H/P, W/P): x_p^n E for every patch
        patches = patches.flatten(2).transpose(1, 2)  # (B, N, width), patches in row-major order
        class_token = self.class_embedding.expand(B, 1, config.width)  # (B, 1, width)
        # z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
        x = torch.cat([class_token, patches], dim=1) + self.position_embedding  # (B, 1+N, width)
        x = self.ln_pre(x)
        for block in self.blocks:
            x = block(x)
        # pooled = LN_post(z_L[:, 0]), the class token
        pooled = self.ln_post(x[:, 0])  # (B, width)
        return x, pooled
