"""Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 with one
evaluation per step; k-diffusion `sample_euler`, diffusers `EulerDiscreteScheduler`).

Notation (minildm -> Karras et al. -> diffusers):
    x         -> x_i (the sigma view, x_t sqrt(1 + sigma^2))  -> sample (scaled by init_noise_sigma)
    denoised  -> D_theta(x_i; sigma_i)                       -> pred_original_sample
    d         -> d_i = (x_i - D_theta(x_i; sigma_i)) / sigma_i -> derivative

One step from sigma_i to sigma_{i+1}:

    d_i     = (x_i - D(x_i; sigma_i)) / sigma_i                (Karras eq. 3)
    x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i

Since x_i = D + sigma_i d_i, this is x_{i+1} = D + sigma_{i+1} d_i: with d_i = eps_hat, exactly
DDIM's eta = 0 step (DDIM eq. 13 in the sigma view), and finite at sigma_i = inf. A first-order
method: its global error halves when the number of steps doubles (tests/test_ode_identities.py).
"""

import torch

from minildm.diffusion.sigma_sampler import SigmaSampler


class EulerSampler(SigmaSampler):
    """Loop over `.timesteps`, calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def sigma_step(
        self, i: int, stage: int, x: torch.Tensor, denoised: torch.Tensor, eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:  # fmt: skip
        sigma_next = self.sigmas[i + 1].item()
        # d = (x - D) / sigma = eps_hat
        d = eps_hat
        # x_next = x + (sigma_next - sigma) d = D + sigma_next d
        return denoised + sigma_next * d
