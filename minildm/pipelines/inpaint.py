"""Inpainting, two ways (mask convention in pipelines/masks.py: 1 = fill in, 0 = keep).

1. A model trained for it (LDM sec. 4.5; Stable Diffusion's inpainting model): the U-Net reads,
   concatenated to z_t along channels, the mask at latent resolution and the latent of the
   masked image (the hole set to 0, mid grey):

       x_concat = [m_z ; s * E(x * (1 - m))]        (B, 1 + c, h, w)
       eps_theta([z_t ; x_concat], t, y)

   It is trained like any LDM, on random masks (pipelines/masks.py) drawn afresh every step.

2. Training-free, with any ordinary model (RePaint, Lugmayr et al. 2022, eq. 8-9, without its
   resampling; the same replacement trick as SDEdit's editing with masks): after every
   sampler step, overwrite the known region with the known latent noised to the new timestep,

       z_{t_prev} = (1 - m_z) * q_sample(z_0^known, t_prev, eps) + m_z * z_{t_prev}^model,

   and after the last step with z_0^known itself, so the known latent cells come back exactly.
   The model only sees the known region through the noisy latent, so boundaries may not match
   as well as with a trained inpainting model.
"""

import torch

from minildm.diffusion.sampler import Sampler
from minildm.ldm import LatentDiffusion, LDMBatch
from minildm.pipelines.masks import MaskConfig, check_mask, latent_mask, random_masks
from minildm.pipelines.sampling import conditions, guided_model_output, initial_noise


def downsampling_factor(ldm: LatentDiffusion) -> int:
    """f = H / h of the model's autoencoder."""
    return ldm.autoencoder.config.downsampling_factor


def inpainting_concat(ldm: LatentDiffusion, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x_concat = [m_z ; s * E(x * (1 - m))] (B, 1 + c, h, w) for images (B, 3, H, W), mask (B, 1, H, W)."""
    mask = check_mask(mask, images)
    # x * (1 - m): the hole becomes 0, mid grey in [-1, 1]
    masked_latents = ldm.encode_images(images * (1 - mask))
    return torch.cat([latent_mask(mask, downsampling_factor(ldm)), masked_latents], dim=1)  # (B, 1 + c, h, w)


def check_inpainting_model(ldm: LatentDiffusion) -> None:
    expected = 1 + ldm.autoencoder.config.latent_channels
    if ldm.config.unet.extra_in_channels != expected:
        raise ValueError(
            f"an inpainting model reads the mask and the masked latent: unet.extra_in_channels must be {expected}, "
            f"got {ldm.config.unet.extra_in_channels} (for an ordinary model use inpaint_training_free)"
        )


@torch.no_grad()
def init_from_base_model(ldm: LatentDiffusion, base: LatentDiffusion) -> None:
    """Start a concat model (inpainting, super-resolution) from a trained ordinary model, as
    Stable Diffusion's inpainting model started from SD 1.2: every weight is copied, and the
    first convolution's weights for the extra input channels are zero, so that before any
    training the new model computes exactly what the base model does, whatever x_concat is."""
    state, base_state = ldm.state_dict(), base.state_dict()
    if set(state) != set(base_state):
        raise ValueError(
            f"the models must have the same parts: {sorted(set(state) ^ set(base_state))[:5]} are in only one"
        )
    for name, value in base_state.items():
        if name == "unet.conv_in.weight":
            extra = state[name][:, value.shape[1] :]  # (C_0, extra_in_channels, 3, 3)
            state[name] = torch.cat([value, torch.zeros_like(extra)], dim=1)
        elif state[name].shape != value.shape:
            raise ValueError(
                f"{name} has shape {tuple(state[name].shape)} here, {tuple(value.shape)} in the base model"
            )
        else:
            state[name] = value
    ldm.load_state_dict(state)


class InpaintingBatches:
    """Training batches for an inpainting model: batches(generator, batch_size) -> LDMBatch, as
    train_ldm expects. Each batch draws images, fresh random masks (boxes, strokes, the images'
    objects, the whole image) and builds x_concat with the frozen encoder."""

    def __init__(
        self,
        ldm: LatentDiffusion,
        images: torch.Tensor,
        mask_config: MaskConfig,
        object_masks: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ):
        check_inpainting_model(ldm)
        N = images.shape[0]
        for name, value in (("object_masks", object_masks), ("tokens", tokens), ("class_labels", class_labels)):
            if value is not None and value.shape[0] != N:
                raise ValueError(f"{name} has {value.shape[0]} rows, images have {N}")
        self.ldm, self.mask_config = ldm, mask_config
        self.images, self.object_masks, self.tokens, self.class_labels = images, object_masks, tokens, class_labels
        self.latents = torch.cat([ldm.encode_images(chunk.to(ldm.device)) for chunk in images.split(256)]).cpu()

    def __call__(self, generator: torch.Generator, batch_size: int) -> LDMBatch:
        device = generator.device
        index = torch.randint(0, self.images.shape[0], (batch_size,), generator=generator, device=device).cpu()

        def pick(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else values[index].to(device)

        images = pick(self.images)
        masks = random_masks(batch_size, images.shape[-1], self.mask_config, generator, pick(self.object_masks))
        concat = inpainting_concat(self.ldm, images, masks)
        return LDMBatch(pick(self.latents), pick(self.tokens), pick(self.class_labels), concat)


@torch.no_grad()
def inpaint(
    ldm: LatentDiffusion,
    sampler: Sampler,
    images: torch.Tensor,
    mask: torch.Tensor,
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    return_latents: bool = False,
) -> torch.Tensor:
    """Fill in mask == 1 of images (B, 3, H, W) with a model trained for inpainting (x_concat)."""
    check_inpainting_model(ldm)
    images = images.to(ldm.device)
    x_concat = inpainting_concat(ldm, images, mask.to(ldm.device))
    B = images.shape[0]
    cond, uncond = conditions(ldm, B, prompts, class_labels, negative_prompts, guidance_scale)
    # z_T ~ N(0, I)
    z = initial_noise((B, ldm.autoencoder.config.latent_channels, *x_concat.shape[2:]), generator, ldm.device)
    for t in sampler.timesteps:
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale, x_concat)
        z = sampler.step(model_output, t, z, generator=generator)
    return z if return_latents else ldm.decode_latents(z)


@torch.no_grad()
def inpaint_training_free(
    ldm: LatentDiffusion,
    sampler: Sampler,
    images: torch.Tensor,
    mask: torch.Tensor,
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    return_latents: bool = False,
) -> torch.Tensor:
    """Fill in mask == 1 of images (B, 3, H, W) with an ordinary (not inpainting-trained) model."""
    images = images.to(ldm.device)
    mask = check_mask(mask.to(ldm.device), images)
    B = images.shape[0]
    cond, uncond = conditions(ldm, B, prompts, class_labels, negative_prompts, guidance_scale)
    # z_0^known = s * E(x); m_z: 1 on latent cells to fill in
    z0_known = ldm.encode_images(images)
    m = latent_mask(mask, downsampling_factor(ldm))
    # z_T ~ N(0, I)
    z = initial_noise(z0_known.shape, generator, ldm.device)
    for t in sampler.timesteps:
        # the noise level of the z that this step returns
        t_prev = sampler.previous_timestep(t)
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale)
        z = sampler.step(model_output, t, z, generator=generator)
        if t_prev >= 0:
            noise = initial_noise(z.shape, generator, ldm.device)
            alpha_bar_prev = sampler.alpha_bar(t_prev)
            # z_known = sqrt(alpha_bar_{t_prev}) z_0^known + sqrt(1 - alpha_bar_{t_prev}) eps
            z_known = alpha_bar_prev**0.5 * z0_known + (1 - alpha_bar_prev) ** 0.5 * noise
        else:
            z_known = z0_known
        # z_{t_prev} = (1 - m) * z_known + m * z_{t_prev}^model
        z = (1 - m) * z_known + m * z
    return z if return_latents else ldm.decode_latents(z)
