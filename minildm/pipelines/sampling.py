"""What every pipeline shares: building a sampler by name, the condition and its
classifier-free-guidance counterpart, and one guided evaluation of the denoiser.

The denoising loop itself is written out in each pipeline (diffusers' philosophy: a sampler
does not own the model), and reads, for a batch of B latents z:

    for t in sampler.timesteps:
        model_output = guided_model_output(ldm, z, t, cond, uncond, guidance_scale, x_concat)
        z = sampler.step(model_output, t, z, generator=generator)

Classifier-free guidance (Ho and Salimans 2022, eq. 6) evaluates the U-Net twice per step,
once on the null condition (or a negative prompt) and once on the condition. Both run as one
forward pass on a batch of 2B, the unconditional half first:

    out_uncond, out_cond = eps_theta([z; z], [t; t], [uncond; cond], [x_concat; x_concat])
    model_output = out_uncond + w (out_cond - out_uncond)

A negative prompt (popularised by Stable Diffusion's users) takes the place of the empty
prompt in the unconditional half, so guidance pushes away from what it describes.
"""

import torch

from minildm.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPlusPlus2MSampler,
    EulerAncestralSampler,
    EulerSampler,
    HeunSampler,
    PLMSSampler,
    Sampler,
    classifier_free_guidance,
    composed_guidance,
    rescale_guidance,
)
from minildm.diffusion.flow import FlowEulerSampler
from minildm.ldm import Condition, LatentDiffusion

SAMPLERS = ("ddim", "ddpm", "plms", "euler", "euler_a", "heun", "dpmpp_2m")  # for diffusion models
FLOW_SAMPLERS = ("flow_euler",)  # for flow-matching models (LDMConfig.objective "flow")
# the samplers of the sigma view (diffusion/sigmas.py), which can take Karras et al.'s noise levels
SIGMA_SAMPLERS = {
    "euler": EulerSampler,
    "euler_a": EulerAncestralSampler,
    "heun": HeunSampler,
    "dpmpp_2m": DPMSolverPlusPlus2MSampler,
}


def make_sampler(
    ldm: LatentDiffusion, name: str = "ddim", num_inference_steps: int = 50, eta: float = 0.0, karras: bool = False
) -> Sampler:
    """The sampler `name` (one of SAMPLERS) over `num_inference_steps` of the model's schedule, for
    its prediction type.

    eta only applies to DDIM (0: deterministic, 1: DDPM-like noise); karras (Karras et al. 2022,
    eq. 5 noise levels) only to the sigma-view samplers euler, euler_a, heun and dpmpp_2m.
    Spacing is "leading" (Stable Diffusion's), except on a zero-terminal-SNR schedule, where
    sampling must start at t = T - 1, the step that was trained on pure noise: "trailing" (Lin et
    al. 2023, sec. 3.3). Heun takes 2n - 1 network evaluations, PLMS n + 1, the others n."""
    if ldm.config.objective == "flow":
        if name not in FLOW_SAMPLERS or eta != 0.0 or karras:
            raise ValueError(
                f"a flow-matching model samples with 'flow_euler' (Euler steps of dx/dt = v), got {name!r}"
            )
        return FlowEulerSampler(num_inference_steps)
    if name in FLOW_SAMPLERS:
        raise ValueError("flow_euler samples flow-matching models (objective 'flow'); this one is a diffusion model")
    if name not in SAMPLERS:
        raise ValueError(f"sampler name must be one of {SAMPLERS}, got {name!r}")
    if eta != 0.0 and name != "ddim":
        raise ValueError(f"eta applies only to the ddim sampler, got eta={eta} for {name!r}")
    if karras and name not in SIGMA_SAMPLERS:
        raise ValueError(f"karras applies only to the samplers {tuple(SIGMA_SAMPLERS)}, got {name!r}")
    spacing = "trailing" if ldm.schedule.config.zero_terminal_snr else "leading"
    common = (ldm.schedule, num_inference_steps, ldm.prediction_type, spacing)
    if name == "ddim":
        return DDIMSampler(*common, eta=eta)
    if name == "ddpm":
        return DDPMSampler(*common)
    if name == "plms":
        return PLMSSampler(*common)
    return SIGMA_SAMPLERS[name](*common, karras=karras)


def check_guidance_scale(guidance_scale: float) -> None:
    if not guidance_scale >= 0:
        raise ValueError(
            f"guidance_scale must be >= 0 (0: unconditional, 1: conditional, > 1: guided), got {guidance_scale}"
        )


def batch_size_of(prompts: list[str] | None, class_labels: torch.Tensor | None, num_images: int | None) -> int:
    """B from whichever of prompts, class_labels, num_images is given (they must agree)."""
    sizes = {len(value) for value in (prompts, class_labels) if value is not None}
    if num_images is not None:
        sizes.add(num_images)
    if len(sizes) != 1:
        raise ValueError(
            f"give prompts, class_labels or num_images with one batch size, got sizes {sorted(sizes) or 'none'}"
        )
    return sizes.pop()


def conditions(
    ldm: LatentDiffusion,
    batch_size: int,
    prompts: list[str] | None,
    class_labels: torch.Tensor | None,
    negative_prompts: list[str] | None,
    guidance_scale: float,
) -> tuple[Condition, Condition | None]:
    """(cond, uncond) for B samples; uncond is None when no guidance is asked for (w = 1 and no
    negative prompt) or the model has no condition to guide with."""
    check_guidance_scale(guidance_scale)
    for name, values in (("prompts", prompts), ("class_labels", class_labels)):
        if values is not None and len(values) != batch_size:
            raise ValueError(f"need one entry of {name} per sample ({batch_size}), got {len(values)}")
    if negative_prompts is not None:
        if ldm.config.conditioning != "text":
            raise ValueError(f"negative_prompts need a text-conditioned model, this one is {ldm.config.conditioning!r}")
        if len(negative_prompts) != batch_size:
            raise ValueError(f"need one negative prompt per sample ({batch_size}), got {len(negative_prompts)}")
    if ldm.config.conditioning == "none":
        if guidance_scale != 1.0 or prompts is not None or class_labels is not None:
            raise ValueError(
                "this model is unconditional: it takes no prompts or class_labels and guidance_scale must be 1, "
                f"got guidance_scale={guidance_scale}"
            )
        return Condition(), None
    cond = ldm.encode_condition(prompts, class_labels)
    if guidance_scale == 1.0 and negative_prompts is None:
        return cond, None
    uncond = ldm.null_condition(batch_size) if negative_prompts is None else ldm.encode_condition(negative_prompts)
    return cond, uncond


def guided_model_output(
    ldm: LatentDiffusion,
    z_t: torch.Tensor,
    t: float | torch.Tensor,
    cond: Condition,
    uncond: Condition | None,
    guidance_scale: float,
    x_concat: torch.Tensor | None = None,
    guidance_rescale: float = 0.0,
) -> torch.Tensor:
    """The U-Net's prediction at (z_t (B, c, h, w), t), guided when uncond is given (and
    rescaled toward the conditional output's std with guidance_rescale > 0)."""
    B = z_t.shape[0]
    # the sigma-view samplers evaluate at real-valued timesteps (the U-Net embeds sin/cos of t)
    t = float(t)
    t_batch = torch.full((B,), t, device=z_t.device, dtype=torch.long if t.is_integer() else torch.float32)
    if uncond is None:
        return ldm.predict(z_t, t_batch, cond, x_concat).float()
    both = ldm.predict(
        torch.cat([z_t, z_t]),
        torch.cat([t_batch, t_batch]),
        Condition.cat([uncond, cond]),
        None if x_concat is None else torch.cat([x_concat, x_concat]),
    ).float()  # (2B, c, h, w)
    out_uncond, out_cond = both.chunk(2)
    # out = out_uncond + w (out_cond - out_uncond)
    guided = classifier_free_guidance(out_uncond, out_cond, guidance_scale)
    return rescale_guidance(guided, out_cond, guidance_rescale) if guidance_rescale else guided


def composed_model_output(
    ldm: LatentDiffusion, z_t: torch.Tensor, t: float | torch.Tensor, uncond: Condition,
    conds: list[Condition], scales: list[float],
) -> torch.Tensor:  # fmt: skip
    """Composed guidance (diffusion/guidance.py, Liu et al. 2022): one U-Net pass over the
    unconditional half and every condition in `conds`, out_uncond + sum_i w_i (out_i - out_uncond)."""
    B, n = z_t.shape[0], 1 + len(conds)
    t = float(t)
    t_batch = torch.full((n * B,), t, device=z_t.device, dtype=torch.long if t.is_integer() else torch.float32)
    outs = ldm.predict(torch.cat([z_t] * n), t_batch, Condition.cat([uncond, *conds])).float().chunk(n)
    return composed_guidance(outs[0], outs[1:], scales)


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """z_T ~ N(0, I), drawn from `generator` (on its own device) so a fixed seed gives the same start."""
    noise_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=noise_device).to(device)
