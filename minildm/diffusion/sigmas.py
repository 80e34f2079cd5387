"""The sigma view of a DDPM schedule: sampling as solving an ODE in the noise level sigma.

Karras, Aittala, Aila and Laine, "Elucidating the Design Space of Diffusion-Based Generative
Models" (NeurIPS 2022), sec. 2 and Table 1. Divide DDPM's x_t = sqrt(alpha_bar) x_0 +
sqrt(1 - alpha_bar) eps by sqrt(alpha_bar):

    x = x_t / sqrt(alpha_bar) = x_0 + sigma eps,     sigma = sqrt((1 - alpha_bar) / alpha_bar)

so x is the data plus Gaussian noise of standard deviation sigma ("variance exploding"), and
alpha_bar = 1 / (1 + sigma^2), x_t = x / sqrt(1 + sigma^2). The denoiser D(x; sigma) is the
network's estimate of x_0 (eq. 2-3 of Karras et al. with s(t) = 1, sigma(t) = t):

    D(x; sigma) = x0_hat(x_t = x / sqrt(1 + sigma^2), alpha_bar = 1 / (1 + sigma^2))

whatever the network predicts (eps, x0 or v; sampler.py converts). The probability-flow ODE
(Song et al. 2021; Karras eq. 1 and 3) then reads

    dx / dsigma = (x - D(x; sigma)) / sigma = eps_hat

(x - D = sigma eps_hat since x = x0_hat + sigma eps_hat), and every deterministic sampler is an
ODE solver stepping sigma from sigma_max down to 0. One Euler step of it is exactly one DDIM
step with eta = 0 (tests/test_ode_identities.py).

Noise levels between the T training timesteps: the network takes a real-valued t (its
timestep embedding is sin/cos of t), and a sigma off the training grid is given the t that
interpolates linearly in log sigma between its neighbours, as k-diffusion and diffusers do.

Karras et al.'s step sizes (eq. 5, rho = 7) crowd the steps at low noise:

    sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i = 0 ... n-1

A zero-terminal-SNR schedule (Lin et al. 2023) has alpha_bar_{T-1} = 0, so sigma_{T-1} = inf.
Samplers that start there use the limit of their update (an Euler step from sigma = inf is
x_next = D + sigma_next eps_hat, finite); diffusers instead sets alpha_bar_{T-1} = 2^-24.
"""

import torch

from minildm.diffusion.schedule import NoiseSchedule

KARRAS_RHO = 7.0


def schedule_sigmas(schedule: NoiseSchedule) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) for t = 0 ... T-1, float64 (T,), increasing."""
    alpha_bar = schedule.alphas_cumprod
    # sigma = sqrt((1 - alpha_bar) / alpha_bar)
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def alpha_bar_of_sigma(sigma: float) -> float:
    """alpha_bar = 1 / (1 + sigma^2) (0 at sigma = inf)."""
    return 1 / (1 + sigma**2)


def to_sigma_view(x_t: torch.Tensor, sigma: float) -> torch.Tensor:
    """x = x_t / sqrt(alpha_bar) = x_t sqrt(1 + sigma^2)."""
    # x = x_t sqrt(1 + sigma^2)
    return x_t * (1 + sigma**2) ** 0.5


def from_sigma_view(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x_t = x / sqrt(1 + sigma^2) = sqrt(alpha_bar) x."""
    # x_t = x / sqrt(1 + sigma^2)
    return x / (1 + sigma**2) ** 0.5


def ode_derivative(x: torch.Tensor, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
    """dx/dsigma = (x - D(x; sigma)) / sigma, the probability-flow ODE (Karras et al. eq. 3)."""
    # dx/dsigma = (x - D) / sigma
    return (x - denoised) / sigma


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = KARRAS_RHO) -> torch.Tensor:
    """n noise levels from sigma_max down to sigma_min, float64 (n,) (Karras et al. eq. 5)."""
    if not 0 < sigma_min <= sigma_max < float("inf"):
        raise ValueError(f"Karras sigmas need 0 < sigma_min <= sigma_max < inf, got {sigma_min} and {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    # sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def timestep_of_sigma(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The real-valued timestep of each noise level in `sigma` (N,): linear interpolation in log
    sigma between the two training timesteps around it; `sigmas` (T,) are schedule_sigmas."""
    log_sigmas = sigmas.log()
    log_sigma = sigma.to(torch.float64).log()
    # low: the last training timestep whose sigma is <= sigma (kept in [0, T-2] to have a right neighbour)
    low = (torch.searchsorted(log_sigmas, log_sigma, right=True) - 1).clamp(0, len(sigmas) - 2)
    # w = (log sigma_low - log sigma) / (log sigma_low - log sigma_{low+1}), in [0, 1]
    w = ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])).clamp(0, 1)
    return low + w


def sigma_of_timestep(t: float, sigmas: torch.Tensor) -> float:
    """The inverse of timestep_of_sigma: sigma at a real-valued t in [0, T-1], log-linear between timesteps."""
    if not 0 <= t <= len(sigmas) - 1:
        raise ValueError(f"t must lie in [0, {len(sigmas) - 1}], got {t}")
    low = min(int(t), len(sigmas) - 2)
    w = t - low
    if w == 0:
        return sigmas[low].item()
    if w == 1:
        return sigmas[low + 1].item()
    # log sigma(t) = (1 - w) log sigma_low + w log sigma_{low+1}
    return torch.exp((1 - w) * sigmas[low].log() + w * sigmas[low + 1].log()).item()
