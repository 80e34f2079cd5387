"""The latent scale factor: why Stable Diffusion multiplies its latents by 0.18215
(LDM sec. 4.3.2, App. D.1; the estimate itself is written out in App. G).

The diffusion process q(z_t | z_0) = N(sqrt(alpha_bar_t) z_0, (1 - alpha_bar_t) I) is designed
for data of unit variance: at t = T it must have destroyed z_0 and left pure N(0, I) noise,
and the noise schedule's signal-to-noise ratio SNR_t = alpha_bar_t / (1 - alpha_bar_t)
assumes Var(z_0) = 1. The autoencoder's latents do not have unit variance: the KL weight of
1e-6 barely constrains them (SD's VAE gives std ~ 5.5 on natural images). Latents with std
sigma would see a schedule whose SNR is sigma^2 times too high everywhere, and the last
step would not reach noise. So LDM rescales once, before diffusion, with a single number:

    scale_factor = 1 / std(z)   over a sample of training latents  (SD: 1 / 5.49 = 0.18215)

and diffusion runs on scale_factor * z; the decoder gets z_scaled / scale_factor back. The
number belongs to the autoencoder's weights, so it is stored in its checkpoint.

One number scales every channel alike, and an autoencoder's channels need not be alike: after
the global factor one channel may have twice the std of another, and a mean far from 0. A
channel with half the std has a quarter of the SNR the schedule was designed for, so its
content is lost to noise early in the forward process. `latent_norm="channel"`
standardises each channel c instead, as EDM2 (Karras et al. 2024) does for SD's latents:

    z_scaled[c] = (z[c] - latent_shift[c]) * scale_factor[c],
    latent_shift[c] = mean(z[c]),  scale_factor[c] = 1 / std(z[c])   (over the same sample)

and the decoder gets z_scaled[c] / scale_factor[c] + latent_shift[c] back. "global"
(AutoencoderConfig's default, and Stable Diffusion's) keeps the one number and no shift; the
presets in minildm/config.py use "channel".
"""

import torch
from torch import nn


def register_latent_norm(model: nn.Module, config) -> None:
    """Give `model` the buffers of `config.latent_norm`: a scalar scale_factor ("global"), or
    scale_factor and latent_shift per channel ("channel"); identity until computed."""
    if config.latent_norm == "global":
        model.register_buffer("scale_factor", torch.tensor(1.0))
    else:
        model.register_buffer("scale_factor", torch.ones(config.latent_channels))
        model.register_buffer("latent_shift", torch.zeros(config.latent_channels))


def to_diffusion(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Unscaled latents z (B, c, h, w) -> the diffusion model's: s * z, or per channel (z - m) * s."""
    if model.scale_factor.ndim == 0:
        return z * model.scale_factor
    return (z - model.latent_shift.view(1, -1, 1, 1)) * model.scale_factor.view(1, -1, 1, 1)


def from_diffusion(model: nn.Module, z_scaled: torch.Tensor) -> torch.Tensor:
    """The inverse of to_diffusion: z_scaled / s, or per channel z_scaled / s + m."""
    if model.scale_factor.ndim == 0:
        return z_scaled / model.scale_factor
    return z_scaled / model.scale_factor.view(1, -1, 1, 1) + model.latent_shift.view(1, -1, 1, 1)


@torch.no_grad()
def sampled_latents(model: nn.Module, images: torch.Tensor, batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """The unscaled latents of `images` (N, 3, H, W): sampled z ~ q(z|x) for KL (as LDM, which
    takes the std of `encode_first_stage(x).sample()`), z_e for VQ."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    latents = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size]
        encoded = model.encode(batch)
        latents.append(encoded if isinstance(encoded, torch.Tensor) else encoded.sample(generator))
    return torch.cat(latents).float()


@torch.no_grad()
def compute_scale_factor(
    model: nn.Module, images: torch.Tensor, batch_size: int = 64, seed: int = 0
) -> float | torch.Tensor:
    """Set the model's scale factor from `images` (in [-1, 1], on the model's device) and return
    it: 1 / std(z) ("global"), or per channel 1 / std(z[c]) with latent_shift = mean(z[c])."""
    was_training = model.training
    model.eval()
    z = sampled_latents(model, images, batch_size, seed)
    if model.scale_factor.ndim == 0:
        # scale_factor = 1 / std(z)
        scale = 1.0 / z.std().item()
        model.scale_factor.fill_(scale)
    else:
        # latent_shift[c] = mean(z[c]), scale_factor[c] = 1 / std(z[c])
        model.latent_shift.copy_(z.mean(dim=(0, 2, 3)))
        model.scale_factor.copy_(1.0 / z.std(dim=(0, 2, 3)))
        scale = model.scale_factor.clone()
    model.train(was_training)
    return scale
