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

from minildm.diffusion.sampler import Sampler, draw_noise
from minildm.diffusion.schedule import NoiseSchedule


class DDIMSampler(Sampler):
    """Loop over `.timesteps`, calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        prediction_type: str = "eps",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        clip_sample: bool = False,
        eta: float = 0.0,
        final_alpha_bar_is_one: bool = True,
    ):
        super().__init__(schedule, num_inference_steps, prediction_type, timestep_spacing, steps_offset, clip_sample)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM variance), got {eta}")
        self.eta = eta
        # alpha_bar after the last step
        self.final_alpha_bar = 1.0 if final_alpha_bar_is_one else schedule.alphas_cumprod[0].item()

    def step(
        self, model_output: torch.Tensor, t: int | torch.Tensor, x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """x_{t_prev} from x_t (B, ...) and the model's prediction at (x_t, t), DDIM eq. 12."""
        t = int(t)
        t_prev = self.previous_timestep(t)
        alpha_bar_t = self.alpha_bar(t)
        alpha_bar_prev = self.alpha_bar(t_prev) if t_prev >= 0 else self.final_alpha_bar
        x0_hat, eps_hat = self.predict_x0_eps(model_output, x_t, alpha_bar_t)

        # sigma^2 = eta^2 (1 - alpha_bar_prev) / (1 - alpha_bar_t) (1 - alpha_bar_t / alpha_bar_prev)   (eq. 16)
        sigma = self.eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)) ** 0.5
        # x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_hat + sigma z   (eq. 12)
        # (for eta = 1 the square root's argument is >= 0 only up to rounding, hence the max)
        x_prev = alpha_bar_prev**0.5 * x0_hat + max(1 - alpha_bar_prev - sigma**2, 0.0) ** 0.5 * eps_hat
        if self.eta > 0:
            x_prev = x_prev + sigma * draw_noise(x_t, generator)
        return x_prev
