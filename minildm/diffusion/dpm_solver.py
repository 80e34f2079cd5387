"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE written for
the data prediction D (Lu, Zhou, Bao, Chen, Li and Zhu, "DPM-Solver++: Fast Solver for Guided
Sampling of Diffusion Probabilistic Models", 2022, Algorithm 2; k-diffusion `sample_dpmpp_2m`,
diffusers `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)`).

Notation (minildm -> Lu et al. -> diffusers):
    sigma_i (sigma view)       -> sigma_t / alpha_t                  -> sigmas[i]
    lambda_i = -log sigma_i    -> lambda_t = log(alpha_t / sigma_t)  -> lambda_t
    denoised D_i               -> x_theta(x_{t_i}, t_i)              -> model_outputs[-1]
    h_i = lambda_{i+1} - lambda_i                                    -> h

In the sigma view the ODE dx/dsigma = (x - D) / sigma is linear in x, and its exact solution
over one step, with D approximated by a polynomial in lambda, is

    first order  x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h_i} - 1) D_i
    second order x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h_i} - 1) D'_i,
                 D'_i = (1 + 1 / (2 r_i)) D_i - 1 / (2 r_i) D_{i-1},   r_i = h_{i-1} / h_i

Since e^{-h_i} = sigma_{i+1} / sigma_i, the first-order step is x_{i+1} = D_i + sigma_{i+1}
eps_hat: DDIM (tests/test_ode_identities.py). The first step has no D_{i-1} and the last (to
sigma = 0, where h = inf) uses first order, as in k-diffusion and in diffusers with
final_sigmas_type="zero". From sigma_0 = inf (zero terminal SNR) the first step is that
first-order limit, and r_1 = inf there, so D'_1 = D_1.
"""

import math

import torch

from minildm.diffusion.sigma_sampler import SigmaSampler


class DPMSolverPlusPlus2MSampler(SigmaSampler):
    """Loop over `.timesteps`, calling `x_t = sampler.step(model(x_t, t), t, x_t, generator)`."""

    def reset(self) -> None:
        self.previous = None  # (D_{i-1}, h_{i-1}) from the step before

    def sigma_step(
        self, i: int, stage: int, x: torch.Tensor, denoised: torch.Tensor, eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:  # fmt: skip
        sigma, sigma_next = self.sigmas[i].item(), self.sigmas[i + 1].item()
        # h = lambda_next - lambda = log(sigma / sigma_next)  (inf at sigma_next = 0 or sigma = inf)
        h = math.log(sigma / sigma_next) if sigma_next > 0 else math.inf
        previous, self.previous = self.previous, (denoised, h)
        if math.isinf(sigma):
            # the limit of the first-order step: x_next = D + sigma_next eps_hat
            return denoised + sigma_next * eps_hat
        if previous is None or sigma_next == 0:
            denoised_hat = denoised
        else:
            denoised_prev, h_prev = previous
            # r = h_prev / h
            r = h_prev / h
            # D' = (1 + 1 / (2 r)) D - 1 / (2 r) D_prev
            denoised_hat = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * denoised_prev
        # x_next = (sigma_next / sigma) x - (e^{-h} - 1) D'
        return (sigma_next / sigma) * x - math.expm1(-h) * denoised_hat
