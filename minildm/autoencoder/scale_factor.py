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
"""

import torch
from torch import nn


@torch.no_grad()
def latent_std(model: nn.Module, images: torch.Tensor, batch_size: int = 64, seed: int = 0) -> float:
    """std of the unscaled latents over `images` (N, 3, H, W): sampled z ~ q(z|x) for KL (as
    LDM, which takes the std of `encode_first_stage(x).sample()`), z_e for VQ."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    latents = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size]
        encoded = model.encode(batch)
        latents.append(encoded if isinstance(encoded, torch.Tensor) else encoded.sample(generator))
    return torch.cat(latents).float().std().item()


@torch.no_grad()
def compute_scale_factor(model: nn.Module, images: torch.Tensor, batch_size: int = 64, seed: int = 0) -> float:
    """Set model.scale_factor = 1 / std(z) over `images` (in [-1, 1], on the model's device); returns it."""
    was_training = model.training
    model.eval()
    # scale_factor = 1 / std(z)
    scale = 1.0 / latent_std(model, images, batch_size, seed)
    model.scale_factor.fill_(scale)
    model.train(was_training)
    return scale
