"""Super-resolution by a latent diffusion model conditioned on the low-resolution image
(LDM sec. 4.4; the conditioning augmentation of Cascaded Diffusion Models, Ho et al. 2022, sec. 3.2).

The low-resolution image (B, 3, H/k, W/k) is upsampled bilinearly to (B, 3, H, W), encoded by
the frozen autoencoder, and concatenated to z_t with one more channel holding its noise level:

    z_lr  = s * E(upsample(x_lr))
    z_aug = sqrt(1 - sigma^2) z_lr + sigma eps,      sigma in [0, 1)     (noise augmentation)
    x_concat = [z_aug ; sigma * 1]                   (B, c + 1, h, w)

Noise augmentation: during training sigma is drawn uniformly in [0, max_noise_level] per image,
so the model learns not to trust the conditioning's fine detail, which makes it robust to low-res
inputs that differ from the training degradation (Ho et al. 2022 found it essential for cascades;
Stable Diffusion's x4 upscaler has the same `noise_level` input). At sampling time sigma is a
choice: 0 trusts the input most, larger values let the model invent more detail.

The training degradation is an area (box-filter) downsampling by k = 2 or 4.
"""

import torch
import torch.nn.functional as F

from minildm.diffusion.sampler import Sampler
from minildm.ldm import LatentDiffusion, LDMBatch
from minildm.pipelines.sampling import conditions, guided_model_output, initial_noise


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, H/k, W/k) by averaging k x k blocks (the training degradation)."""
    if factor < 1 or images.shape[-1] % factor or images.shape[-2] % factor:
        raise ValueError(
            f"factor must be a positive divisor of the image size {tuple(images.shape[-2:])}, got {factor}"
        )
    return F.avg_pool2d(images, kernel_size=factor)


def upsample(low_res: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 3, h, w) -> (B, 3, h k, w k), bilinear: the baseline, and the model's conditioning."""
    return F.interpolate(low_res, scale_factor=factor, mode="bilinear", align_corners=False)


def check_sr_model(ldm: LatentDiffusion) -> None:
    expected = ldm.autoencoder.config.latent_channels + 1
    if ldm.config.unet.extra_in_channels != expected:
        raise ValueError(
            f"a super-resolution model reads the low-res latent and its noise level: unet.extra_in_channels "
            f"must be {expected}, got {ldm.config.unet.extra_in_channels}"
        )


def augment(z_lr: torch.Tensor, noise_level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_concat = [sqrt(1 - sigma^2) z_lr + sigma eps ; sigma] (B, c + 1, h, w) for sigma (B,)."""
    sigma = noise_level.view(-1, 1, 1, 1).to(z_lr.dtype)
    # z_aug = sqrt(1 - sigma^2) z_lr + sigma eps
    z_aug = (1 - sigma**2).sqrt() * z_lr + sigma * noise
    return torch.cat([z_aug, sigma.expand(-1, 1, *z_lr.shape[2:])], dim=1)  # (B, c + 1, h, w)


def check_noise_level(noise_level: float) -> None:
    if not 0.0 <= noise_level < 1.0:
        raise ValueError(f"noise_level (the std of the augmentation noise) must lie in [0, 1), got {noise_level}")


class SuperResolutionBatches:
    """Training batches for a super-resolution model: batches(generator, batch_size) -> LDMBatch.

    The latents of the images and of their degraded-then-upsampled versions are encoded once;
    each batch draws a noise level sigma ~ U[0, max_noise_level] per image and augments."""

    def __init__(
        self,
        ldm: LatentDiffusion,
        images: torch.Tensor,
        factor: int,
        max_noise_level: float,
        tokens: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ):
        check_sr_model(ldm)
        check_noise_level(max_noise_level)
        N = images.shape[0]
        for name, value in (("tokens", tokens), ("class_labels", class_labels)):
            if value is not None and value.shape[0] != N:
                raise ValueError(f"{name} has {value.shape[0]} rows, images have {N}")
        self.max_noise_level, self.tokens, self.class_labels = max_noise_level, tokens, class_labels
        chunks = [chunk.to(ldm.device) for chunk in images.split(256)]
        self.latents = torch.cat([ldm.encode_images(chunk) for chunk in chunks]).cpu()
        self.low_res_latents = torch.cat(
            [ldm.encode_images(upsample(downsample(chunk, factor), factor)) for chunk in chunks]
        ).cpu()

    def __call__(self, generator: torch.Generator, batch_size: int) -> LDMBatch:
        device = generator.device
        index = torch.randint(0, self.latents.shape[0], (batch_size,), generator=generator, device=device).cpu()

        def pick(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else values[index].to(device)

        z_lr = pick(self.low_res_latents)
        noise_level = self.max_noise_level * torch.rand(batch_size, generator=generator, device=device)
        noise = torch.randn(z_lr.shape, generator=generator, device=device)
        return LDMBatch(
            pick(self.latents), pick(self.tokens), pick(self.class_labels), augment(z_lr, noise_level, noise)
        )


@torch.no_grad()
def super_resolve(
    ldm: LatentDiffusion,
    sampler: Sampler,
    low_res: torch.Tensor,
    factor: int,
    noise_level: float = 0.1,
    prompts: list[str] | None = None,
    class_labels: torch.Tensor | None = None,
    negative_prompts: list[str] | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    return_latents: bool = False,
) -> torch.Tensor:
    """Images (B, 3, h k, w k) in [-1, 1] from low-resolution images (B, 3, h, w) in [-1, 1]."""
    check_sr_model(ldm)
    check_noise_level(noise_level)
    f = ldm.autoencoder.config.downsampling_factor
    if low_res.ndim != 4 or low_res.shape[1] != 3:
        raise ValueError(f"low_res must be (B, 3, h, w) in [-1, 1], got shape {tuple(low_res.shape)}")
    if factor < 1 or (low_res.shape[-1] * factor) % f or (low_res.shape[-2] * factor) % f:
        raise ValueError(
            f"the output size {low_res.shape[-2] * factor}x{low_res.shape[-1] * factor} (low-res size times factor "
            f"{factor}) must be a multiple of the autoencoder's downsampling factor {f}"
        )
    B = low_res.shape[0]
    cond, uncond = conditions(ldm, B, prompts, class_labels, negative_prompts, guidance_scale)
    # z_lr = s * E(upsample(x_lr))
    z_lr = ldm.encode_images(upsample(low_res.to(ldm.device), factor))
    x_concat = augment(
        z_lr, torch.full((B,), noise_level, device=ldm.device), initial_noise(z_lr.shape, generator, ldm.device)
    )
    # z_T ~ N(0, I)
    z = initial_noise(z_lr.shape, generator, ldm.device)
    for t in sampler.timesteps:
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale, x_concat)
        z = sampler.step(model_output, t, z, generator=generator)
    return z if return_latents else ldm.decode_latents(z)
