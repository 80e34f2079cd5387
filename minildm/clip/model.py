"""CLIP: an image encoder and a text encoder that embed into one space (Radford et al. 2021, sec. 2.3-2.4, Fig. 3).

    image_embeds = W_i ViT(x)[class token]        (B, embed_dim)     minildm/clip/vision.py
    text_embeds  = W_t Transformer(y)[end token]  (B, embed_dim)     minildm/text/text_encoder.py
    logits       = exp(t) * cos(image_embeds, text_embeds)            minildm/clip/loss.py

The text tower is the same `TextEncoder` that conditions the U-Net (LDM sec. 3.3): Stable Diffusion's
tau_theta is exactly the text half of a CLIP. Both towers end in a linear projection without bias
to `embed_dim`; the log temperature t is one learned scalar, `logit_scale`, initialised to
log(1 / 0.07) (sec. 2.5).
"""

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from minildm.clip.loss import INIT_LOGIT_SCALE, clip_logits
from minildm.clip.vision import VisionEncoder, VisionEncoderConfig
from minildm.text.text_encoder import TextEncoder, TextEncoderConfig


@dataclass
class CLIPConfig:
    embed_dim: int = 64  # the joint space: both projections map into it
    vision: VisionEncoderConfig = field(
        default_factory=lambda: VisionEncoderConfig(image_size=32, patch_size=8, width=96, num_layers=3, num_heads=4)
    )
    text: TextEncoderConfig = field(
        default_factory=lambda: TextEncoderConfig(context_length=24, width=96, num_layers=3, num_heads=4)
    )

    def __post_init__(self):
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {self.embed_dim}")
        for tower in ("vision", "text"):
            projection_dim = getattr(self, tower).projection_dim
            if projection_dim not in (None, self.embed_dim):
                raise ValueError(
                    f"{tower}.projection_dim must be None (set from embed_dim) or embed_dim={self.embed_dim}, "
                    f"got {projection_dim}"
                )


class CLIP(nn.Module):
    """images (B, 3, H, W) in [-1, 1] and token ids (B, L) -> embeddings (B, embed_dim) in one space."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.vision = VisionEncoder(dataclasses.replace(config.vision, projection_dim=config.embed_dim))
        self.text = TextEncoder(dataclasses.replace(config.text, projection_dim=config.embed_dim))
        # t, the log temperature: exp(t) = 1 / 0.07 at initialisation
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """image_embeds (B, embed_dim) = W_i LN_post(class token), not normalised."""
        return self.vision.project(self.vision(images)[1])

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """text_embeds (B, embed_dim) = W_t (hidden state at the end token), not normalised."""
        return self.text.project(self.text(tokens)[1])

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """logits_per_image (B_img, B_txt) = exp(t) * cos(image_embeds_i, text_embeds_j)."""
        return clip_logits(self.encode_image(images), self.encode_text(tokens), self.logit_scale)
