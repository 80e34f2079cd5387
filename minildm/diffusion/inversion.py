"""DDIM inversion: the deterministic DDIM sampler (eta = 0) run the other way, from data x_0 to
the noise x_T that DDIM maps back to (approximately) x_0 (Song et al., DDIM sec. 4.3 and eq.
14: the ODE can be integrated in either direction; the form used for editing real images in
Mokady et al., "Null-text Inversion", CVPR 2023, and diffusers' `DDIMInverseScheduler`).

Going up the timestep grid t_0 < t_1 < ... < t_{n-1}, from x at the noise level of the previous
grid point (alpha_bar = 1 for x_0 itself) to t_i:

    eps_hat = eps_theta(x, t_i)                                       (x stands in for x_{t_i})
    x0_hat  = (x - sqrt(1 - alpha_bar_prev) eps_hat) / sqrt(alpha_bar_prev)
    x_{t_i} = sqrt(alpha_bar_{t_i}) x0_hat + sqrt(1 - alpha_bar_{t_i}) eps_hat

This is DDIM eq. 12 with sigma = 0 solved for the noisier point. The network cannot be
evaluated at the point being computed, so it is evaluated at the current x with the target's
timestep: the error this makes shrinks with the step size, so reconstruction improves with
more steps (tests/test_ode_inversion.py). In the sigma view (sigmas.py) each step is an
explicit Euler step of dx/dsigma = eps_hat with sigma growing.

An x0 or v output is read at the noise level of the timestep the network was given (t_i);
diffusers' DDIMInverseScheduler reads it at the current level (alpha_bar_prev), which for x0
divides by 0 at the first step. For eps networks the two are the same.

Editing a real image starts from the x_T this returns (minildm/pipelines/inversion_edit.py).
"""

from collections.abc import Callable

import torch

from minildm.diffusion.sampler import predict_x0_eps
from minildm.diffusion.schedule import NoiseSchedule, check_prediction_type
from minildm.diffusion.timesteps import inference_timesteps


def ddim_inversion(
    model: Callable[[torch.Tensor, int], torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    num_inference_steps: int,
    prediction_type: str = "eps",
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
) -> torch.Tensor:
    """x_T (B, ...) for data x0 (B, ...): the start from which DDIMSampler with the same grid
    (eta = 0) returns approximately x0. model(x_t, t) returns the network's eps, x0 or v."""
    grid = inference_timesteps(schedule.num_timesteps, num_inference_steps, timestep_spacing, steps_offset)
    return ddim_inversion_on_grid(model, schedule, x0, grid, prediction_type)


def ddim_inversion_on_grid(
    model: Callable[[torch.Tensor, int], torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    grid: torch.Tensor,
    prediction_type: str = "eps",
) -> torch.Tensor:
    """x_T (B, ...) for data x0 (B, ...) on a sampler's descending timestep grid (n,), e.g. a
    DDIMSampler's `grid`, which then maps x_T back to approximately x0."""
    check_prediction_type(prediction_type)
    if grid.ndim != 1 or len(grid) == 0 or not bool((grid[:-1] > grid[1:]).all()):
        raise ValueError(f"grid must be a descending 1-D tensor of timesteps (a sampler's grid), got {grid.tolist()}")
    x = x0
    alpha_bar_prev = 1.0  # x_0 itself
    # t_0 < t_1 < ... < t_{n-1}: the sampler's grid, upward
    for t in grid.flip(0).tolist():
        alpha_bar_t = schedule.alphas_cumprod[t].item()
        _, eps_hat = predict_x0_eps(prediction_type, model(x, t), x, alpha_bar_t)
        # x0_hat = (x - sqrt(1 - alpha_bar_prev) eps_hat) / sqrt(alpha_bar_prev)
        x0_hat = (x - (1 - alpha_bar_prev) ** 0.5 * eps_hat) / alpha_bar_prev**0.5
        # x_t = sqrt(alpha_bar_t) x0_hat + sqrt(1 - alpha_bar_t) eps_hat
        x = alpha_bar_t**0.5 * x0_hat + (1 - alpha_bar_t) ** 0.5 * eps_hat
        alpha_bar_prev = alpha_bar_t
    return x
