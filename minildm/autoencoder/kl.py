"""AutoencoderKL: the KL-regularized first stage of LDM (sec. 3.1) and of Stable Diffusion.

    posterior = q(z|x) = N(mu(x), sigma(x)^2)      mu, log sigma^2 = quant_conv(E(x))
    x~ = D(post_quant_conv(z))

`quant_conv` and `post_quant_conv` are 1x1 convolutions kept from LDM's code so that its
weights (and Stable Diffusion's) load unchanged.

The diffusion model does not see z but z * scale_factor, scaled to unit variance
(LDM sec. 4.3.2, App. D.1; see scale_factor.py):

    encode_latents(x) = scale_factor * mu(x)   (sample=True draws z ~ q(z|x), as LDM and SD train)
    decode_latents(z_scaled) = D(z_scaled / scale_factor)

(or each channel standardised, with latent_norm="channel"). These two and `reconstruct` are the
first-stage interface that VQAutoencoder implements too (first_stage.py), so the latent
diffusion model never asks which autoencoder it has.
"""

import torch
from torch import nn

from minildm.autoencoder.config import AutoencoderConfig
from minildm.autoencoder.distribution import DiagonalGaussian
from minildm.autoencoder.encoder_decoder import Decoder, Encoder
from minildm.autoencoder.scale_factor import from_diffusion, register_latent_norm, to_diffusion


class AutoencoderKL(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] <-> latents (B, c, H/f, W/f) with a Gaussian posterior."""

    kind = "kl"
    sum_pixel_loss = True  # LDM's KL recipe sums the reconstruction loss over pixels (losses.py)

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        config.check_kind(self.kind)
        self.config = config
        c = config.latent_channels
        self.encoder = Encoder(config, out_channels=2 * c)
        self.quant_conv = nn.Conv2d(2 * c, 2 * c, 1)
        self.post_quant_conv = nn.Conv2d(c, c, 1)
        self.decoder = Decoder(config)
        # scale_factor (and per channel a latent_shift), set by compute_scale_factor()
        register_latent_norm(self, config)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z|x) for images x (B, 3, H, W) in [-1, 1]."""
        return DiagonalGaussian(self.quant_conv(self.encoder(x)))  # moments (B, 2c, h, w)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x~ = D(z) for unscaled latents z (B, c, h, w); returns (B, 3, H, W)."""
        return self.decoder(self.post_quant_conv(z))

    def forward(
        self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruction x~ (from a sampled z, or from the mean when sample=False) and the posterior."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.decode(z), posterior

    def encode_latents(
        self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The diffusion model's input: scale_factor * z, z = mu(x) (or z ~ q(z|x) with sample=True);
        per channel (z - latent_shift) * scale_factor with latent_norm="channel" (scale_factor.py)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return to_diffusion(self, z)

    def decode_latents(self, z_scaled: torch.Tensor) -> torch.Tensor:
        """Images from the diffusion model's latents: D(z_scaled / scale_factor) (per channel: + latent_shift)."""
        return self.decode(from_diffusion(self, z_scaled))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x~ = D(mu(x)), the deterministic reconstruction."""
        return self.decode(self.encode(x).mode())

    def regularized_forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """For training: x~ from a sampled z, the KL term KL(q(z|x) || N(0, I)) and its logs."""
        x_rec, posterior = self(x, sample=True, generator=generator)
        kl = posterior.kl().mean()  # summed over latent elements, mean over the batch (LDM)
        return x_rec, kl, {"kl": kl.item()}
