"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2 and eq. 11-12), optionally on a subset of
the training timesteps (Nichol and Dhariwal 2021, sec. 4).

Notation (minildm -> DDPM paper -> diffusers `DDPMScheduler`):
    alpha_bar_t  -> \\bar\\alpha_t                    -> alphas_cumprod[t] (alpha_prod_t)
    alpha_bar_prev -> \\bar\\alpha_{t-1}              -> alpha_prod_t_prev (1 after the last step)
    x0_hat       -> x_0 predicted from eps (eq. 15)  -> pred_original_sample
    mean         -> \\tilde\\mu_t (eq. 7)              -> pred_prev_sample
    fixed_small  -> sigma_t^2 = \\tilde\\beta_t         -> variance_type "fixed_small"
    fixed_large  -> sigma_t^2 = \\beta_t               -> variance_type "fixed_large"

One step from t to the next timestep t_prev of the grid (t_prev = t - 1 on the full grid):
    beta = 1 - alpha_bar_t / alpha_bar_prev  (= beta_t on the full grid)
    x_{t_prev} = mu_tilde(x0_hat, x_t) + sigma z,  z ~ N(0, I),  and z = 0 at the last step.
With eps prediction, mu_tilde(x0_hat, x_t) equals eq. 11:
    1 / sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta).

Matches diffusers' `DDPMScheduler.step` (diffusers 0.42): same timestep grids, the same t_prev
(the next entry of the grid), the same noise draws (`torch.randn(x_t.shape, generator=...)`).
One difference: diffusers adds noise whenever t > 0, also at the last step of a grid that ends
above 0 (trailing, or leading with steps_offset); minildm adds none at the last step, as in
Algorithm 2, since there is no later step to remove it.
"""

import torch

from minildm.diffusion.schedule import check_prediction_type
from minildm.diffusion.timesteps import (
    inference_timesteps,
    previous_timestep,
    truncate_for_strength,
)

VARIANCE_TYPES = ("fixed_small", "fixed_large")


class DDPMSampler:
    """Loop over `.timesteps`, calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def __init__(
        self,
        schedule,
        prediction_type="eps",
        variance_type="fixed_small",
        num_inference_steps=None,
        clip_sample=False,
        timestep_spacing="leading",
        steps_offset=0,
    ):
        check_prediction_type(prediction_type)
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.variance_type = variance_type
        self.clip_sample = clip_sample
        if num_inference_steps is None:
            # the full chain T-1, ..., 0; any t in [0, T) may be stepped
            self.timesteps = torch.arange(schedule.num_timesteps - 1, -1, -1)
        else:
            self.timesteps = inference_timesteps(
                schedule.num_timesteps, num_inference_steps, timestep_spacing, steps_offset
            )
        self.full_chain = num_inference_steps is None

    def timesteps_for_strength(self, strength):
        """The timesteps that img2img visits for `strength` in [0, 1] (1: all, 0: none)."""
        return truncate_for_strength(self.timesteps, strength)

    def previous_timestep(self, t):
        if self.full_chain:
            if not 0 <= int(t) < self.schedule.num_timesteps:
                raise ValueError(f"t must lie in [0, {self.schedule.num_timesteps - 1}], got {int(t)}")
            return int(t) - 1
        return previous_timestep(self.timesteps, t)

    def step(self, model_output, t, x_t, generator=None):
        """x_{t_prev} ~ p(x_{t_prev} | x_t) for model_output, x_t of shape (B, ...)."""
        t = int(t)
        t_prev = self.previous_timestep(t)
        alpha_bar_t = self.schedule.alphas_cumprod[t].item()
        alpha_bar_prev = self.schedule.alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0
        # beta = 1 - alpha_bar_t / alpha_bar_prev: the noise added between t_prev and t
        beta = 1 - alpha_bar_t / alpha_bar_prev

        t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long)
        x0_hat, _ = self.schedule.x0_and_eps_from_model_output(self.prediction_type, model_output, x_t, t_batch)
        if self.clip_sample:
            x0_hat = x0_hat.clamp(-1, 1)

        # mu_tilde = sqrt(alpha_bar_prev) beta / (1 - alpha_bar_t) x_0 + sqrt(1 - beta) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t
        coef_x0 = alpha_bar_prev**0.5 * beta / (1 - alpha_bar_t)
        coef_xt = (1 - beta) ** 0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
        mean = coef_x0 * x0_hat + coef_xt * x_t
        if t_prev < 0:
            return mean

        if self.variance_type == "fixed_small":
            # sigma^2 = beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta, the posterior's (eq. 7)
            variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta
        else:
            # sigma^2 = beta, the upper bound of sec. 3.2
            variance = beta
        device = generator.device if generator is not None else x_t.device
        noise = torch.randn(x_t.shape, generator=generator, device=device, dtype=x_t.dtype).to(x_t.device)
        return mean + variance**0.5 * noise
