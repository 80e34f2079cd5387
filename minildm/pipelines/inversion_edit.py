"""Editing a real image by DDIM inversion and a new prompt, in latent space (DDIM sec. 4.3 and
eq. 14: the eta = 0 ODE runs both ways; Mokady et al., "Null-text Inversion", CVPR 2023, sec. 3;
Hertz et al., "Prompt-to-Prompt", 2022, sec. 3).

    z_0  = s * E(x)
    z_T  = inverse-DDIM(z_0; source condition, guidance w_inv)     (diffusion/inversion.py)
    z_0' = DDIM(z_T; new condition, guidance w), eta = 0, the same timestep grid
    x'   = D(z_0' / s)

With the source condition and w = w_inv the two solves are inverses of each other up to the
discretisation error of the inversion, so x' is (nearly) the autoencoder's reconstruction of x.
A new prompt changes the ODE's direction field but keeps its start, the noise that encodes
this particular image: what the new prompt does not ask to change (layout, outline) comes back
from z_T. SDEdit (image_to_image.py) instead adds fresh noise to z_0 and forgets more of it the
higher its strength. Guidance w > 1 on the new prompt pushes harder towards it but leaves the
field the inversion followed, so more of the source is lost (what Null-text Inversion fixes by
tuning the null embedding per step; not done here).
"""

import torch

from minildm.diffusion import DDIMSampler
from minildm.diffusion.inversion import ddim_inversion_on_grid
from minildm.ldm import LatentDiffusion
from minildm.pipelines.sampling import conditions, guided_model_output


def check_ode_sampler(sampler: DDIMSampler) -> None:
    """Inversion undoes the steps of a deterministic DDIM sampler that ends at x_0 itself."""
    if (
        not isinstance(sampler, DDIMSampler)
        or sampler.eta != 0.0
        or sampler.final_alpha_bar != 1.0
        or sampler.clip_sample
    ):
        raise ValueError(
            "editing by inversion needs a DDIMSampler with eta = 0, final_alpha_bar_is_one=True and no clip_sample "
            f"(the ODE the inversion runs backwards), got {type(sampler).__name__}"
        )


@torch.no_grad()
def invert_images(
    ldm: LatentDiffusion,
    sampler: DDIMSampler,
    images: torch.Tensor,
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """z_T (B, c, h, w): the noise from which `sampler` with the same condition returns the
    latents of images (B, 3, H, W) in [-1, 1]. guidance_scale 1 inverts the conditional model."""
    check_ode_sampler(sampler)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    cond, uncond = conditions(ldm, images.shape[0], prompts, class_labels, None, guidance_scale)
    # z_0 = s * E(x)
    z0 = ldm.encode_images(images.to(ldm.device))

    def model(z_t: torch.Tensor, t: int) -> torch.Tensor:
        return guided_model_output(ldm, z_t, t, cond, uncond, guidance_scale)

    return ddim_inversion_on_grid(model, sampler.schedule, z0, sampler.grid, sampler.prediction_type)


@torch.no_grad()
def regenerate(
    ldm: LatentDiffusion,
    sampler: DDIMSampler,
    noise: torch.Tensor,
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 1.0,
    return_latents: bool = False,
) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] (or latents) sampled by `sampler` from given noise z_T
    (B, c, h, w), e.g. invert_images' output, under a condition (prompts or class_labels)."""
    check_ode_sampler(sampler)
    if noise.shape[1:] != ldm.latent_shape():
        raise ValueError(f"noise must be (B, {', '.join(map(str, ldm.latent_shape()))}), got {tuple(noise.shape)}")
    cond, uncond = conditions(ldm, noise.shape[0], prompts, class_labels, negative_prompts, guidance_scale)
    z = noise.to(ldm.device)
    for t in sampler.timesteps:
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale)
        z = sampler.step(model_output, t, z)
    return z if return_latents else ldm.decode_latents(z)


def edit_by_inversion(
    ldm: LatentDiffusion,
    sampler: DDIMSampler,
    images: torch.Tensor,
    source_prompts: list[str] | None = None,
    prompts: list[str] | None = None,
    source_class_labels: torch.Tensor | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 1.0,
    inversion_guidance_scale: float = 1.0,
    return_latents: bool = False,
) -> torch.Tensor:
    """Edited images (B, 3, H, W) in [-1, 1] (or latents) from images (B, 3, H, W) in [-1, 1]:
    inverted under the source condition (source_prompts or source_class_labels, guidance
    inversion_guidance_scale), then sampled by the same DDIM grid under the new one (prompts or
    class_labels, guidance guidance_scale). Deterministic: no generator."""
    noise = invert_images(ldm, sampler, images, source_prompts, source_class_labels, inversion_guidance_scale)
    return regenerate(ldm, sampler, noise, prompts, class_labels, negative_prompts, guidance_scale, return_latents)
