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

from minildm.diffusion.sampler import Sampler, draw_noise
from minildm.diffusion.schedule import NoiseSchedule

VARIANCE_TYPES = ("fixed_small", "fixed_large")


class DDPMSampler(Sampler):
    """Loop over `.timesteps`, calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`.
    num_inference_steps=None (the default) is the full chain T-1, ..., 0 of Algorithm 2."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        prediction_type: str = "eps",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        clip_sample: bool = False,
        variance_type: str = "fixed_small",
    ):
        super().__init__(schedule, num_inference_steps, prediction_type, timestep_spacing, steps_offset, clip_sample)
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance_type must be one of {VARIANCE_TYPES}, got {variance_type!r}")
        self.variance_type = variance_type

    def step(
        self, model_output: torch.Tensor, t: int | torch.Tensor, x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """x_{t_prev} ~ p(x_{t_prev} | x_t) for model_output, x_t of shape (B, ...)."""
        t = int(t)
        t_prev = self.previous_timestep(t)
        alpha_bar_t, alpha_bar_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        # beta = 1 - alpha_bar_t / alpha_bar_prev: the noise added between t_prev and t
        beta = 1 - alpha_bar_t / alpha_bar_prev
        x0_hat, _ = self.predict_x0_eps(model_output, x_t, alpha_bar_t)

        # mu_tilde = sqrt(alpha_bar_prev) beta / (1 - alpha_bar_t) x0_hat
        #          + sqrt(1 - beta) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t
        coef1 = alpha_bar_prev**0.5 * beta / (1 - alpha_bar_t)
        coef2 = (1 - beta) ** 0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
        mean = coef1 * x0_hat + coef2 * x_t
        if t_prev < 0:
            return mean

        if self.variance_type == "fixed_small":
            # sigma^2 = beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta, the posterior's (eq. 7)
            variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta
        else:
            # sigma^2 = beta, the upper bound of sec. 3.2
            variance = beta
        return mean + variance**0.5 * draw_noise(x_t, generator)
