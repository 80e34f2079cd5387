"""The first-stage interface: what the latent diffusion model needs from an autoencoder.

LDM sec. 3.1 trains two kinds of first stage, KL-regularized (AutoencoderKL) and VQ-regularized
(VQAutoencoder), and the diffusion model on top of either (the paper's LDM-KL-f and LDM-VQ-f
rows). Both implement this protocol, so `LatentDiffusion`, its checkpoints and the training
stages never ask which one they have:

    encode_latents(x) = s * E(x)          deterministic: mu(x) for KL, z_e for VQ
    decode_latents(z) = D(z / s)          VQ quantizes inside D
    reconstruct(x)    = D(E(x))
    regularized_forward(x, generator) -> (x~, L_reg, logs)   for training: KL term or L_vq

with s = scale_factor = 1 / std(z) (LDM sec. 4.3.2, App. D.1; scale_factor.py), or with
latent_norm="channel" each channel standardised, (z[c] - mean[c]) / std[c] (EDM2).
"""

from typing import Protocol, runtime_checkable

import torch

from minildm.autoencoder.config import AutoencoderConfig
from minildm.autoencoder.kl import AutoencoderKL
from minildm.autoencoder.vq import VQAutoencoder


@runtime_checkable
class FirstStage(Protocol):
    config: AutoencoderConfig
    scale_factor: torch.Tensor
    kind: str  # "kl" or "vq"
    sum_pixel_loss: bool  # sum (KL recipe) or average (VQ recipe) the reconstruction loss over pixels

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode_latents(self, z_scaled: torch.Tensor) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...

    def regularized_forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]: ...


def build_autoencoder(config: AutoencoderConfig) -> AutoencoderKL | VQAutoencoder:
    """The first stage that `config.kind` names: AutoencoderKL ("kl") or VQAutoencoder ("vq")."""
    return AutoencoderKL(config) if config.kind == "kl" else VQAutoencoder(config)
