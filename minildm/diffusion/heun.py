"""Heun's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1; k-diffusion
`sample_heun`, diffusers `HeunDiscreteScheduler`): the trapezoidal rule, second order, two
network evaluations per step.

Notation as in euler.py. One step from sigma_i to sigma_{i+1}:

    d_i       = (x_i - D(x_i; sigma_i)) / sigma_i                        first evaluation
    x_euler   = x_i + (sigma_{i+1} - sigma_i) d_i                        an Euler step
    d'_i      = (x_euler - D(x_euler; sigma_{i+1})) / sigma_{i+1}        second evaluation
    x_{i+1}   = x_i + (sigma_{i+1} - sigma_i) (d_i + d'_i) / 2

The last step, to sigma_n = 0, is a plain Euler step (d' would divide by 0), so n steps take
2n - 1 evaluations; `timesteps` lists each, the timestep of sigma_{i+1} appearing twice (the
second stage of step i, the first of step i+1). A first step from sigma_0 = inf (a
zero-terminal-SNR schedule) is an Euler step too: the trapezoid over an infinite interval is
undefined (diffusers avoids it by setting alpha_bar_{T-1} = 2^-24). Global error: a quarter
when the number of steps doubles (tests/test_ode_identities.py).
"""

import math

import torch

from minildm.diffusion.sigma_sampler import SigmaSampler


class HeunSampler(SigmaSampler):
    """Loop over `.timesteps` (2n - 1 of them), calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def num_evaluations(self, i: int) -> int:
        """2, or 1 for an Euler step: the last one (to sigma = 0), or one from sigma = inf."""
        return 1 if self.sigmas[i + 1] == 0 or math.isinf(self.sigmas[i]) else 2

    def reset(self) -> None:
        self.first_stage = None  # (x_i, d_i) between the two evaluations of a step

    def sigma_step(
        self, i: int, stage: int, x: torch.Tensor, denoised: torch.Tensor, eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:  # fmt: skip
        sigma, sigma_next = self.sigmas[i].item(), self.sigmas[i + 1].item()
        # d = (x - D) / sigma = eps_hat, at the noise level of this evaluation
        d = eps_hat
        if self.num_evaluations(i) == 1:
            # x_next = x + (sigma_next - sigma) d = D + sigma_next d
            return denoised + sigma_next * d
        if stage == 0:
            self.first_stage = (x, d)
            # x_euler = x + (sigma_next - sigma) d
            return x + (sigma_next - sigma) * d
        if self.first_stage is None:
            raise ValueError("Heun's second evaluation came without its first: step through `timesteps` in order")
        x_i, d_i = self.first_stage
        self.first_stage = None
        # x_next = x_i + (sigma_next - sigma) (d_i + d'_i) / 2
        return x_i + (sigma_next - sigma) * (d_i + d) / 2
