"""Sampling with an image prompt (IP-Adapter, Ye et al. 2023, sec. 3.2-3.4) and image variations.

An LDM with an IP-Adapter (minildm/train/ip_adapter.py) reads the text tokens c_t and N image
tokens c_i' = ImageProjection(c_i), c_i the reference image's CLIP embedding. Classifier-free
guidance compares that with the empty prompt and a zero image embedding (sec. 3.3):

    eps_hat = eps(z_t, t, [c_null; c_i'(0)]) + w * (eps(z_t, t, [c_t; c_i'(c_i)]) - eps(z_t, t, [c_null; c_i'(0)]))

and lambda (`ip_scale`, sec. 3.4) sets how strongly every cross-attention follows the image tokens.

Image variations (Stable Diffusion image variations, unCLIP, Ramesh et al. 2022, sec. 3) are the
same with the empty text: the sample is drawn from what the image embedding alone says, so the
variations keep what CLIP encodes (here colour, shape and position) and redraw the rest.
"""

import torch

from minildm.diffusion.sampler import Sampler
from minildm.ldm import Condition, LatentDiffusion
from minildm.nn.ip_adapter import ImageProjection, set_ip_adapter_scale
from minildm.pipelines.sampling import conditions, guided_model_output, initial_noise


@torch.no_grad()
def image_prompt_to_image(
    ldm: LatentDiffusion,
    image_proj: ImageProjection,
    sampler: Sampler,
    prompts: list[str],
    image_embeds: torch.Tensor,
    guidance_scale: float = 4.0,
    ip_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] for B prompts and B reference CLIP embeddings image_embeds (B, D)."""
    if image_embeds.dim() != 2 or len(image_embeds) != len(prompts):
        raise ValueError(
            f"need one image embedding (B, D) per prompt, got {tuple(image_embeds.shape)} for {len(prompts)} prompts"
        )
    set_ip_adapter_scale(ldm.unet, ip_scale)
    image_embeds = image_embeds.to(ldm.device)
    B = len(prompts)
    text_cond, text_uncond = conditions(ldm, B, prompts, None, None, guidance_scale)
    # the U-Net reads [c_t; c_i'] (B, L + N, d); the unconditional branch [c_null; c_i'(0)]
    cond = Condition(context=torch.cat([text_cond.context, image_proj(image_embeds)], dim=1), pooled=text_cond.pooled)
    uncond = None
    if text_uncond is not None:
        null_image = image_proj(torch.zeros_like(image_embeds))  # (B, N, d)
        uncond = Condition(context=torch.cat([text_uncond.context, null_image], dim=1), pooled=text_uncond.pooled)
    # z_T ~ N(0, I)
    z = initial_noise((B, *ldm.latent_shape()), generator, ldm.device)
    for t in sampler.timesteps:
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale)
        z = sampler.step(model_output, t, z, generator=generator)
    return ldm.decode_latents(z)


@torch.no_grad()
def image_variations(
    ldm: LatentDiffusion,
    image_proj: ImageProjection,
    sampler: Sampler,
    image_embeds: torch.Tensor,
    guidance_scale: float = 4.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One variation (B, 3, H, W) of each reference embedding image_embeds (B, D): the empty text, the image tokens."""
    return image_prompt_to_image(
        ldm, image_proj, sampler, [""] * len(image_embeds), image_embeds, guidance_scale, 1.0, generator
    )


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Diversity of K images (K, 3, H, W): the mean over pairs i < j of the RMS pixel difference
    sqrt(mean((x_i - x_j)^2)), in [-1, 1] units. 0 when all K are the same image."""
    if images.dim() != 4 or len(images) < 2:
        raise ValueError(f"need K >= 2 images (K, C, H, W), got shape {tuple(images.shape)}")
    flat = images.flatten(1)  # (K, C*H*W)
    # d_ij = sqrt(mean_p (x_i[p] - x_j[p])^2)
    distances = torch.cdist(flat, flat) / flat.shape[1] ** 0.5  # (K, K)
    i, j = torch.triu_indices(len(images), len(images), offset=1)
    return distances[i, j].mean().item()
