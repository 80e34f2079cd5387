"""Euler ancestral sampling: an Euler step of the ODE down to sigma_down, then fresh noise up to
sigma_{i+1} (k-diffusion `sample_euler_ancestral` with eta = 1, diffusers
`EulerAncestralDiscreteScheduler`). The noise split is DDPM's: the step from sigma_i to
sigma_{i+1} keeps the variance of the ancestral (posterior) sample,

    sigma_up^2   = sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2
    sigma_down^2 = sigma_{i+1}^2 - sigma_up^2
    x_{i+1}      = x_i + (sigma_down - sigma_i) d_i + sigma_up z,   z ~ N(0, I)

with d_i = (x_i - D(x_i; sigma_i)) / sigma_i (Karras eq. 3). Notation as in euler.py; sigma_up,
sigma_down and z are k-diffusion's sigma_up, sigma_down and noise (diffusers: the same names).
As in Euler, x_i + (sigma_down - sigma_i) d_i = D + sigma_down d_i, which is finite at
sigma_i = inf (sigma_down = 0 there).
Stochastic: samples are not a deterministic function of the starting noise. No noise is
drawn at the last step (sigma_up = 0); diffusers draws one there and multiplies it by 0.
"""

import torch

from minildm.diffusion.sampler import draw_noise
from minildm.diffusion.sigma_sampler import SigmaSampler


class EulerAncestralSampler(SigmaSampler):
    """Loop over `.timesteps`, calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def sigma_step(
        self, i: int, stage: int, x: torch.Tensor, denoised: torch.Tensor, eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:  # fmt: skip
        sigma, sigma_next = self.sigmas[i].item(), self.sigmas[i + 1].item()
        # sigma_up = sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2) = sigma_next sqrt(1 - (sigma_next / sigma)^2)
        sigma_up = sigma_next * (1 - (sigma_next / sigma) ** 2) ** 0.5
        # sigma_down = sqrt(sigma_next^2 - sigma_up^2)   (the max guards against a rounding below 0)
        sigma_down = max(sigma_next**2 - sigma_up**2, 0.0) ** 0.5
        # d = (x - D) / sigma = eps_hat
        d = eps_hat
        # x_next = x + (sigma_down - sigma) d + sigma_up z = D + sigma_down d + sigma_up z
        x_next = denoised + sigma_down * d
        if sigma_up > 0:
            x_next = x_next + sigma_up * draw_noise(x_next, generator)
        return x_next
