"""Image-to-image by SDEdit (Meng et al., "SDEdit: Guided Image Synthesis and Editing with
Stochastic Differential Equations", ICLR 2022, sec. 3), in latent space as Stable Diffusion does.

Encode the input, noise its latent part of the way with the forward process, and run only the
rest of the reverse process from there:

    z_0 = s * E(x);   t_0 = first timestep kept for `strength` (the last int(n * strength) of n)
    z_{t_0} = sqrt(alpha_bar_{t_0}) z_0 + sqrt(1 - alpha_bar_{t_0}) eps      (DDPM eq. 4)
    then the usual guided sampler steps from t_0 down.

strength = 0 runs no step and returns the input's latent unchanged; strength = 1 ignores the
input and starts from pure noise z_T ~ N(0, I), i.e. it is text-to-image with the same seed.
In between, low strength keeps the layout and colours (high-SNR steps are only denoised),
high strength lets the model change more: the realism-faithfulness trade-off of SDEdit fig. 3.
"""

import torch

from minildm.diffusion.sampler import Sampler
from minildm.ldm import LatentDiffusion
from minildm.pipelines.sampling import conditions, guided_model_output, initial_noise


@torch.no_grad()
def image_to_image(
    ldm: LatentDiffusion,
    sampler: Sampler,
    images: torch.Tensor,
    strength: float,
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    return_latents: bool = False,
) -> torch.Tensor:
    """Edited images (B, 3, H, W) in [-1, 1] (or latents) from images (B, 3, H, W) in [-1, 1]."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1] (0: return the input, 1: start from pure noise), got {strength}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    B = images.shape[0]
    cond, uncond = conditions(ldm, B, prompts, class_labels, negative_prompts, guidance_scale)
    # z_0 = s * E(x)
    z0 = ldm.encode_images(images.to(ldm.device))
    timesteps = sampler.timesteps_for_strength(strength)
    if len(timesteps) == 0:
        z = z0
    elif strength == 1.0:
        # z_T ~ N(0, I): the input is forgotten, as in text-to-image
        z = initial_noise(z0.shape, generator, ldm.device)
    else:
        noise = initial_noise(z0.shape, generator, ldm.device)
        alpha_bar = sampler.alpha_bar(timesteps[0])
        # z_{t_0} = sqrt(alpha_bar_{t_0}) z_0 + sqrt(1 - alpha_bar_{t_0}) eps
        z = alpha_bar**0.5 * z0 + (1 - alpha_bar) ** 0.5 * noise
    for t in timesteps:
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale)
        z = sampler.step(model_output, t, z, generator=generator)
    return z if return_latents else ldm.decode_latents(z)
