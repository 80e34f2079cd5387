"""Training a ControlNet on a frozen text-to-image LDM, and sampling with it (Zhang et al., ICCV 2023).

The ControlNet (nn/controlnet.py) is a trainable copy of the U-Net's encoder and middle that reads
a control image c (here the object mask of each training image, datasets/shapes.py) and adds its
residuals to the frozen U-Net's skips. It is trained with the LDM's own loss (LDM eq. 3; ControlNet
eq. 4), the U-Net, the text encoder and the autoencoder frozen:

    L = E_{z0, y, c, eps, t} || target - eps_theta(z_t, t, tau_theta(y), c) ||^2

The text is replaced by the empty prompt with probability `cond_drop_prob` (ControlNet sec. 3.3 drops
it half the time, so that the copy learns to read the control alone; the text then keeps colour).
At sampling time the residuals are multiplied by the conditioning scale s: s = 0 is the base model,
s = 1 the trained control; classifier-free guidance gives both branches the same control, as
diffusers' StableDiffusionControlNetPipeline does:

    eps_hat = eps(z_t, t, null, c) + w (eps(z_t, t, y, c) - eps(z_t, t, null, c)).
"""

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from minildm.diffusion import diffusion_loss
from minildm.diffusion.guidance import classifier_free_guidance
from minildm.diffusion.sampler import Sampler
from minildm.ldm import Condition, LatentDiffusion
from minildm.nn.controlnet import ControlNet, ControlNetConfig
from minildm.pipelines.sampling import conditions, initial_noise


@dataclass
class ControlTrainConfig:
    hint_widths: tuple[int, ...] = (16, 32, 64)  # three widths: a 32x32 mask meets 8x8 latents (f = 4)
    steps: int = 300
    seconds: float | None = None  # also stop after this wall time; None: run every step
    batch_size: int = 16
    lr: float = 5e-4
    cond_drop_prob: float = 0.5  # ControlNet sec. 3.3: half the steps see the empty prompt
    seed: int = 0

    def __post_init__(self):
        self.hint_widths = tuple(self.hint_widths)
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(
                f"need steps >= 1, batch_size >= 1, lr > 0 and cond_drop_prob in [0, 1), "
                f"got {self.steps}, {self.batch_size}, {self.lr}, {self.cond_drop_prob}"
            )
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds must be None or > 0, got {self.seconds}")


def controlled_prediction(
    ldm: LatentDiffusion,
    controlnet: ControlNet,
    z_t: torch.Tensor,
    t: torch.Tensor,
    cond: Condition,
    hint: torch.Tensor,
    conditioning_scale: float = 1.0,
) -> torch.Tensor:
    """The frozen U-Net's prediction for z_t (B, c, h, w) with the ControlNet's residuals for hint (B, C, H, W)."""
    down, mid = controlnet(
        z_t, t, hint, context=cond.context, pooled=cond.pooled, conditioning_scale=conditioning_scale
    )
    return ldm.unet(z_t, t, context=cond.context, pooled=cond.pooled, down_residuals=down, mid_residual=mid)


def controlnet_loss(
    ldm: LatentDiffusion,
    controlnet: ControlNet,
    latents: torch.Tensor,
    tokens: torch.Tensor,
    hints: torch.Tensor,
    cond_drop_prob: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The LDM loss (eq. 3) of the controlled U-Net on latents z0 (B, c, h, w), tokens (B, L), hints (B, C, H, W)."""
    if ldm.config.objective != "diffusion":
        raise ValueError(f"ControlNet training here needs a diffusion-objective LDM, got {ldm.config.objective!r}")
    B, device = latents.shape[0], latents.device
    # t ~ U{0, ..., T-1}, eps ~ N(0, I); z_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps
    t = torch.randint(0, ldm.schedule.num_timesteps, (B,), generator=generator, device=device)
    noise = torch.randn(latents.shape, generator=generator, device=device)
    z_t = ldm.schedule.q_sample(latents, t, noise)
    drop = torch.rand(B, generator=generator, device=device) < cond_drop_prob
    with torch.no_grad():  # the text encoder is frozen
        cond = ldm.encode_tokens(torch.where(drop[:, None], ldm.null_tokens(B), tokens))
    output = controlled_prediction(ldm, controlnet, z_t, t, cond, hints)
    return diffusion_loss(
        ldm.schedule, output.float(), latents, noise, t, ldm.prediction_type, ldm.config.min_snr_gamma
    )


def train_controlnet(
    ldm: LatentDiffusion,
    images: torch.Tensor,
    captions: list[str],
    hints: torch.Tensor,
    config: ControlTrainConfig,
    progress: bool = False,
) -> tuple[ControlNet, dict[str, list[float] | float | int]]:
    """A ControlNet for the frozen `ldm`, trained on images (N, 3, H, W) in [-1, 1], their captions and
    control images hints (N, C, H, W) (C = 1 for a mask). Returns it and {"loss", "seconds", "steps"}."""
    if not len(images) == len(captions) == len(hints):
        raise ValueError(f"need as many images, captions and hints, got {len(images)}, {len(captions)}, {len(hints)}")
    start = time.perf_counter()
    ldm.requires_grad_(False).eval()
    controlnet = ControlNet.from_unet(ldm.unet, ControlNetConfig(hints.shape[1], config.hint_widths)).train()
    device = ldm.device
    latents = ldm.encode_images(images.to(device))  # z0 = s * E(x), once
    tokens, hints = ldm.tokenize(captions), hints.to(device)
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(config.seed)
    losses = []
    for _ in tqdm(range(config.steps), desc="training the ControlNet", disable=not progress, leave=False):
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator, device=device)
        loss = controlnet_loss(ldm, controlnet, latents[index], tokens[index], hints[index], config.cond_drop_prob,
                               generator)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if config.seconds is not None and time.perf_counter() - start >= config.seconds:
            break
    return controlnet.eval(), {"loss": losses, "seconds": time.perf_counter() - start, "steps": len(losses)}


@torch.no_grad()
def controlled_text_to_image(
    ldm: LatentDiffusion,
    controlnet: ControlNet,
    sampler: Sampler,
    prompts: list[str],
    hints: torch.Tensor,
    guidance_scale: float = 4.0,
    conditioning_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] for prompts and control images hints (B, C, H, W), guided (see above)."""
    B = len(prompts)
    if hints.shape[0] != B:
        raise ValueError(f"need one hint per prompt ({B}), got {hints.shape[0]}")
    cond, uncond = conditions(ldm, B, prompts, None, None, guidance_scale)
    hints = hints.to(ldm.device)
    # z_T ~ N(0, I)
    z = initial_noise((B, *ldm.latent_shape()), generator, ldm.device)
    for t in sampler.timesteps:
        t_batch = torch.full((B,), int(t), device=ldm.device, dtype=torch.long)
        if uncond is None:
            output = controlled_prediction(ldm, controlnet, z, t_batch, cond, hints, conditioning_scale).float()
        else:
            both = controlled_prediction(
                ldm, controlnet, torch.cat([z, z]), torch.cat([t_batch, t_batch]), Condition.cat([uncond, cond]),
                torch.cat([hints, hints]), conditioning_scale,
            ).float()  # fmt: skip
            out_uncond, out_cond = both.chunk(2)
            # out = out_uncond + w (out_cond - out_uncond)
            output = classifier_free_guidance(out_uncond, out_cond, guidance_scale)
        z = sampler.step(output, t, z, generator=generator)
    return ldm.decode_latents(z)
