"""Which of the T training timesteps a sampler visits, for any number of inference steps.

The three spacings of Lin et al. 2023, Table 2, computed exactly as diffusers'
`DDIMScheduler.set_timesteps` / `DDPMScheduler.set_timesteps` (diffusers 0.42) compute them
(same numpy arithmetic, same rounding), for T training steps and n inference steps:

    leading:  t_i = i * (T // n) + steps_offset, i = n-1 ... 0   e.g. T=1000, n=10: 900, 800, ..., 0
              (Stable Diffusion uses steps_offset = 1: 901, 801, ..., 1)
    trailing: t_i = round(T - i * T / n) - 1, i = 0 ... n-1       e.g. 999, 899, ..., 99
    linspace: round(linspace(0, T - 1, n)), reversed              e.g. 999, 888, ..., 0

Only trailing (or leading with n = T) starts at t = T - 1, the step whose SNR a zero-terminal-SNR
schedule sets to 0; Lin et al. recommend it.

For img2img, `strength` in [0, 1] keeps the last int(n * strength) timesteps,
as diffusers' img2img pipelines do: the input is noised to the first kept timestep with
`NoiseSchedule.q_sample` and denoised from there.
"""

import numpy as np
import torch

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def inference_timesteps(
    num_train_timesteps: int, num_inference_steps: int, timestep_spacing: str = "leading", steps_offset: int = 0
) -> torch.Tensor:
    """The timesteps (n,) int64, in descending order."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must lie in [1, {num_train_timesteps}] (the number of training timesteps), "
            f"got {num_inference_steps}"
        )
    if timestep_spacing == "leading":
        step_ratio = num_train_timesteps // num_inference_steps
        timesteps = (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy().astype(np.int64)
        timesteps += steps_offset
    elif timestep_spacing == "trailing":
        step_ratio = num_train_timesteps / num_inference_steps
        timesteps = np.round(np.arange(num_train_timesteps, 0, -step_ratio)).astype(np.int64) - 1
    elif timestep_spacing == "linspace":
        timesteps = np.linspace(0, num_train_timesteps - 1, num_inference_steps).round()[::-1].copy().astype(np.int64)
    else:
        raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {timestep_spacing!r}")
    if timesteps.max() >= num_train_timesteps or steps_offset < 0:
        raise ValueError(f"steps_offset={steps_offset} moves the timesteps outside [0, {num_train_timesteps - 1}]")
    return torch.from_numpy(timesteps)


def truncate_for_strength(timesteps: torch.Tensor, strength: float) -> torch.Tensor:
    """The last int(n * strength) timesteps: where img2img starts from a noised input."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    num_kept = int(len(timesteps) * strength)
    return timesteps[len(timesteps) - num_kept :]
