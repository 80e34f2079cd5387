"""DDIM sampling (Song, Meng and Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12 and 16).

Notation (minildm -> DDIM paper -> diffusers `DDIMScheduler`):
    alpha_bar_t    -> alpha_t (the DDIM paper drops the bar) -> alphas_cumprod[t] (alpha_prod_t)
    alpha_bar_prev -> alpha_{t-1}                          -> alpha_prod_t_prev
    x0_hat         -> f_theta(x_t) = "predicted x_0"        -> pred_original_sample
    eps_hat        -> eps_theta(x_t)                        -> pred_epsilon
    sigma          -> sigma_t(eta) (eq. 16)                 -> std_dev_t
    final_alpha_bar_is_one                                  -> set_alpha_to_one

One step from t to the next timestep t_prev of the grid (eq. 12):
    x_{t_prev} = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat + sigma z
    sigma^2    = eta^2 (1 - alpha_bar_prev) / (1 - alpha_bar_t) (1 - alpha_bar_t / alpha_bar_prev)
eta = 0 is deterministic (an ODE sampler); eta = 1 gives sigma^2 = the DDPM posterior variance.
After the last timestep, alpha_bar_prev is 1 (x_0 itself), or alpha_bar_0 if
final_alpha_bar_is_one is False (Stable Diffusion's choice, diffusers' set_alpha_to_one=False).

Matches diffusers' `DDIMScheduler.step` (diffusers 0.42): the same timestep grids (see
timesteps.py), the same noise draws (one `torch.randn(x_t.shape, generator=...)` per step when
eta > 0, including the last). One difference: diffusers takes t_prev = t - T // n, minildm the
next timestep of the grid. The two agree for leading spacing and for trailing with n dividing T;
for linspace spacing (and trailing with n not dividing T) diffusers' t_prev is not on its own
grid (T=1000, n=10: 999 -> 899, but the next step is at 888), so minildm differs there on purpose.
"""

import torch

from minildm.diffusion.schedule import check_prediction_type
from minildm.diffusion.timesteps import (
    inference_timesteps,
    previous_timestep,
    truncate_for_strength,
)


class DDIMSampler:
    """Loop over `.timesteps`, calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def __init__(
        self,
        schedule,
        num_inference_steps=50,
        eta=0.0,
        prediction_type="eps",
        timestep_spacing="leading",
        steps_offset=0,
        clip_sample=False,
        final_alpha_bar_is_one=True,
    ):
        check_prediction_type(prediction_type)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM variance), got {eta}")
        self.schedule = schedule
        self.eta = eta
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.timesteps = inference_timesteps(schedule.num_timesteps, num_inference_steps, timestep_spacing, steps_offset)
        # alpha_bar after the last step
        self.final_alpha_bar = 1.0 if final_alpha_bar_is_one else schedule.alphas_cumprod[0].item()

    def timesteps_for_strength(self, strength):
        """The timesteps that img2img visits for `strength` in [0, 1] (1: all, 0: none)."""
        return truncate_for_strength(self.timesteps, strength)

    def step(self, model_output, t, x_t, generator=None):
        """x_{t_prev} from x_t (B, ...) and the model's prediction at (x_t, t), DDIM eq. 12."""
        t = int(t)
        t_prev = previous_timestep(self.timesteps, t)
        alpha_bar_t = self.schedule.alphas_cumprod[t].item()
        alpha_bar_prev = self.schedule.alphas_cumprod[t_prev].item() if t_prev >= 0 else self.final_alpha_bar

        t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long)
        x0_hat, eps_hat = self.schedule.x0_and_eps_from_model_output(self.prediction_type, model_output, x_t, t_batch)
        if self.clip_sample:
            x0_hat = x0_hat.clamp(-1, 1)

        # sigma^2 = eta^2 (1 - alpha_bar_prev) / (1 - alpha_bar_t) (1 - alpha_bar_t / alpha_bar_prev)   (eq. 16)
        sigma = self.eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)) ** 0.5
        # x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat + sigma z   (eq. 12)
        # (for eta = 1 the square root's argument is >= 0 only up to rounding, hence the max)
        x_prev = alpha_bar_prev**0.5 * x0_hat + max(1 - alpha_bar_prev - sigma**2, 0.0) ** 0.5 * eps_hat
        if self.eta > 0:
            device = generator.device if generator is not None else x_t.device
            noise = torch.randn(x_t.shape, generator=generator, device=device, dtype=x_t.dtype).to(x_t.device)
            x_prev = x_prev + sigma * noise
        return x_prev
