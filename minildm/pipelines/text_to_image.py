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
    check_guidance_scale,
    composed_model_output,
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
    prompt_parts: list[list[str]] | None = None,
    part_scales: list[float] | None = None,
) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] (or latents z_0 (B, c, h, w)), one per prompt or class label.

    prompts for a text model, class_labels (B,) for a class model, num_images for an
    unconditional one. guidance_scale w: 0 unconditional, 1 conditional (one forward per step),
    > 1 guided. negative_prompts (B strings) replace the empty prompt of the unconditional branch.
    guidance_rescale phi in [0, 1]: Lin et al.'s rescale of the guided output (diffusion/guidance.py).
    progress: a progress bar over the sampler's steps.
    prompt_parts, part_scales: composed guidance (Liu et al. 2022, diffusion/guidance.py): each
    entry of prompt_parts is B more prompts, parts of the prompts, whose guidance direction is
    added with its scale to the prompts' own (guidance_scale; 0 leaves only the parts).
    """
    B = batch_size_of(prompts, class_labels, num_images)
    if prompt_parts is not None:
        if guidance_rescale or class_labels is not None:
            raise ValueError("prompt_parts compose text prompts; they take no class_labels and no guidance_rescale")
        return composed_text_to_image(
            ldm, sampler, prompts, prompt_parts, [guidance_scale, *(part_scales or [])], negative_prompts, generator,
            return_latents, progress,
        )  # fmt: skip
    cond, uncond = conditions(ldm, B, prompts, class_labels, negative_prompts, guidance_scale)
    # z_T ~ N(0, I)
    z = initial_noise((B, *ldm.latent_shape()), generator, ldm.device)
    for t in tqdm(sampler.timesteps, desc="denoising", leave=False, disable=not progress):
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale, guidance_rescale=guidance_rescale)
        z = sampler.step(model_output, t, z, generator=generator)
    return z if return_latents else ldm.decode_latents(z)


@torch.no_grad()
def composed_text_to_image(
    ldm: LatentDiffusion, sampler: Sampler, prompts: list[str] | None, prompt_parts: list[list[str]],
    scales: list[float], negative_prompts: list[str] | None, generator: torch.Generator | None,
    return_latents: bool, progress: bool,
) -> torch.Tensor:  # fmt: skip
    """text_to_image with composed guidance: scales[0] for the prompts, scales[1:] for the parts."""
    if prompts is None or ldm.config.conditioning != "text":
        raise ValueError("prompt_parts need prompts and a text-conditioned model")
    B = len(prompts)
    if len(scales) != 1 + len(prompt_parts) or any(len(part) != B for part in prompt_parts):
        raise ValueError(
            f"need one scale per entry of prompt_parts ({len(prompt_parts)}), got {len(scales) - 1}, "
            f"and each entry with one prompt per sample ({B}), got {[len(part) for part in prompt_parts]}"
        )
    check_guidance_scale(scales[0])  # the parts' scales may be negative: Liu et al.'s NOT
    # (w = 0 asks conditions() for the unconditional branch whatever the prompts' own scale)
    cond, uncond = conditions(ldm, B, prompts, None, negative_prompts, 0.0)
    conds = [cond, *(ldm.encode_condition(part) for part in prompt_parts)]
    z = initial_noise((B, *ldm.latent_shape()), generator, ldm.device)
    for t in tqdm(sampler.timesteps, desc="denoising", leave=False, disable=not progress):
        # out = out_uncond + w (out(prompt) - out_uncond) + sum_i w_i (out(part_i) - out_uncond)
        model_output = composed_model_output(ldm, z, t, uncond, conds, scales)
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
