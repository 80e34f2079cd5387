"""Text-to-image and class-conditional sampling with classifier-free guidance (LDM sec. 4.3,
Ho and Salimans 2022 eq. 6), with any sampler of minildm.diffusion.

Sampling runs the reverse process in latent space and decodes once at the end (LDM sec. 3.2):

    z_T ~ N(0, I);   z_{t_prev} = sampler.step(eps_hat(z_t, t, y), t, z_t)   for t in the sampler's grid
    x = D(z_0 / s)

with eps_hat the guided prediction of pipelines/sampling.py. A fixed `generator` fixes the
starting noise and every noise draw of the sampler, so the same seed gives the same images bit
for bit (on one machine and device).
"""

import torch
from tqdm.auto import tqdm

from minildm.diffusion.sampler import Sampler
from minildm.ldm import LatentDiffusion
from minildm.pipelines.sampling import (
    batch_size_of,
    conditions,
    guided_model_output,
    initial_noise,
)


@torch.no_grad()
def text_to_image(
    ldm: LatentDiffusion,
    sampler: Sampler,
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 4.0,
    generator: torch.Generator | None = None,
    num_images: int | None = None,
    return_latents: bool = False,
    guidance_rescale: float = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] (or latents z_0 (B, c, h, w)), one per prompt or class label.

    prompts for a text model, class_labels (B,) for a class model, num_images for an
    unconditional one. guidance_scale w: 0 unconditional, 1 conditional (one forward per step),
    > 1 guided. negative_prompts (B strings) replace the empty prompt of the unconditional branch.
    guidance_rescale phi in [0, 1]: Lin et al.'s rescale of the guided output (diffusion/guidance.py).
    progress: a progress bar over the sampler's steps.
    """
    B = batch_size_of(prompts, class_labels, num_images)
    cond, uncond = conditions(ldm, B, prompts, class_labels, negative_prompts, guidance_scale)
    # z_T ~ N(0, I)
    z = initial_noise((B, *ldm.latent_shape()), generator, ldm.device)
    for t in tqdm(sampler.timesteps, desc="denoising", leave=False, disable=not progress):
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale, guidance_rescale=guidance_rescale)
        z = sampler.step(model_output, t, z, generator=generator)
    return z if return_latents else ldm.decode_latents(z)


@torch.no_grad()
def class_to_image(
    ldm: LatentDiffusion,
    sampler: Sampler,
    class_labels: torch.Tensor,
    guidance_scale: float = 4.0,
    generator: torch.Generator | None = None,
    return_latents: bool = False,
) -> torch.Tensor:
    """Class-conditional sampling: images (B, 3, H, W) for class_labels (B,) of a class model."""
    if ldm.config.conditioning != "class":
        raise ValueError(f"class_to_image needs a class-conditioned model, this one is {ldm.config.conditioning!r}")
    return text_to_image(
        ldm,
        sampler,
        class_labels=class_labels,
        guidance_scale=guidance_scale,
        generator=generator,
        return_latents=return_latents,
    )
