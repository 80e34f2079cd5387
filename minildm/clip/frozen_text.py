"""A text-to-image LDM whose text encoder is a trained CLIP's text tower, frozen (LDM sec. 3.3,
as Stable Diffusion freezes OpenAI's CLIP ViT-L/14 text encoder).

The demo trains tau_theta jointly with the U-Net (the paper's LDM-KL-8 text-to-image model does).
Here instead

    tau_theta(y) = T_CLIP(y)      the CLIP text transformer's last hidden states (B, L, width),
                                  no projection; the end-token state is the pooled vector

with T_CLIP's weights copied from minildm's own CLIP (minildm/clip/train.py, trained contrastively
on the shapes captions) and requires_grad False, so only the U-Net trains on LDM eq. 3. The
tokenizer is the CLIP's. The U-Net's context_dim (and pooled_dim) follow the CLIP's text width.
"""

import dataclasses
from pathlib import Path

import torch

from minildm.autoencoder import FirstStage
from minildm.clip.model import CLIP
from minildm.config import Config, derive
from minildm.ldm import LatentDiffusion
from minildm.text.tokenizer import CLIPTokenizer
from minildm.train.stages import StageTimer, train_text_ldm


def frozen_clip_text_ldm(
    config: Config, autoencoder: FirstStage, clip: CLIP, tokenizer: CLIPTokenizer
) -> LatentDiffusion:
    """The LDM of `config.ldm` with its text encoder replaced by `clip`'s text tower (frozen) and its tokenizer."""
    if config.ldm.conditioning != "text":
        raise ValueError(f"a frozen text encoder needs conditioning='text', got {config.ldm.conditioning!r}")
    if tokenizer.vocab_size != clip.text.config.vocab_size:
        raise ValueError(
            f"the tokenizer must be the CLIP's: vocab_size {tokenizer.vocab_size} != the CLIP text tower's "
            f"{clip.text.config.vocab_size}"
        )
    text_config = dataclasses.replace(clip.text.config, projection_dim=None)  # the hidden states, not the projection
    # the U-Net reads the CLIP text tower's states: context_dim (and pooled_dim) = its width
    width = text_config.width
    unet = dataclasses.replace(config.ldm.unet, context_dim=width, pooled_dim=width if config.ldm.pooled_text else None)
    ldm_config = dataclasses.replace(config.ldm, unet=unet, text_encoder=text_config)
    config = derive(dataclasses.replace(config, autoencoder=autoencoder.config, ldm=ldm_config))
    torch.manual_seed(config.seed)
    ldm = LatentDiffusion(config.ldm, autoencoder, tokenizer)
    weights = {name: w for name, w in clip.text.state_dict().items() if not name.startswith("text_projection.")}
    ldm.text_encoder.load_state_dict(weights)
    ldm.text_encoder.requires_grad_(False)  # frozen: the optimizer sees only the U-Net
    return ldm


def train_frozen_text_ldm(
    config: Config, autoencoder: FirstStage, clip: CLIP, tokenizer: CLIPTokenizer, device: str,
    out_dir: Path | None = None, timer: StageTimer | None = None, overwrite: bool = False,
) -> tuple[LatentDiffusion, dict[str, list[float]]]:  # fmt: skip
    """The demo's stages 1 and 3-5 (minildm/train/stages.py `train_text_ldm`) with the frozen CLIP text
    tower as tau_theta: data, model, cached latents, LDM training; writes out_dir/ldm.pt."""
    return train_text_ldm(
        config, autoencoder, device, out_dir, timer, overwrite,
        build=lambda captions: frozen_clip_text_ldm(config, autoencoder, clip, tokenizer),
    )  # fmt: skip
