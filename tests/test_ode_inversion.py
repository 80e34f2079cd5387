"""DDIM inversion (minildm/diffusion/inversion.py): data -> noise -> data with the eta = 0 ODE."""

import itertools
import math

import pytest
import torch
from diffusers import DDIMInverseScheduler
from test_diffusion_parity import float64_diffusers

from minildm.diffusion import DDIMSampler, NoiseSchedule, ScheduleConfig
from minildm.diffusion.inversion import ddim_inversion

SCHEDULE = NoiseSchedule(
    ScheduleConfig(num_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
)
M, S = 0.5, 0.3  # data x_0 ~ N(M, S^2)


def gaussian_model(prediction_type):
    """The ideal network for Gaussian data.

    E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) M) / (a S^2 + 1 - a), a = alpha_bar_t.
    """

    def model(x_t, t):
        a = SCHEDULE.alphas_cumprod[int(t)].item()
        eps = math.sqrt(1 - a) * (x_t - math.sqrt(a) * M) / (a * S**2 + 1 - a)
        if prediction_type == "eps":
            return eps
        # v = (eps - sqrt(1 - a) x_t) / sqrt(a)
        return (eps - math.sqrt(1 - a) * x_t) / math.sqrt(a)

    return model


def reconstruct(x0, n, prediction_type):
    model = gaussian_model(prediction_type)
    x_T = ddim_inversion(model, SCHEDULE, x0, n, prediction_type)
    sampler = DDIMSampler(SCHEDULE, n, prediction_type)
    x_t = x_T
    for t in sampler.timesteps:
        x_t = sampler.step(model(x_t, t), t, x_t)
    return x_T, x_t


@pytest.mark.parametrize("prediction_type", ["eps", "v"])
def test_reconstruction_error_falls_as_the_steps_grow(prediction_type):
    x0 = M + S * torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for n in (5, 10, 25, 50, 100):
        x_T, reconstruction = reconstruct(x0, n, prediction_type)
        errors.append((reconstruction - x0).abs().max().item())
    assert all(coarse > fine for coarse, fine in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.1 * errors[0]
    # the inverted noise is (close to) standard normal, as the ODE maps N(M, S^2) to it
    assert abs(x_T.mean().item()) < 0.15 and abs(x_T.std().item() - 1) < 0.15


@pytest.mark.parametrize("steps_offset", [0, 1])
def test_inversion_matches_diffusers_ddim_inverse_scheduler(steps_offset):
    # an eps network; (diffusers converts a v output with the current noise level, minildm with
    # the level of the timestep the network was given, see inversion.py)
    theirs = float64_diffusers(
        DDIMInverseScheduler,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=steps_offset,
    )
    theirs.set_timesteps(20)
    model = gaussian_model("eps")
    x0 = M + S * torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x0
    for t in theirs.timesteps:
        x = theirs.step(model(x, t), t, x).prev_sample
    ours = ddim_inversion(model, SCHEDULE, x0, 20, steps_offset=steps_offset)
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-10)


def test_a_v_output_is_read_at_the_timestep_the_network_was_given():
    # minildm: v at (x, t_i) means eps_hat = sqrt(1 - alpha_bar_{t_i}) x + sqrt(alpha_bar_{t_i}) v, which is
    # the eps network the v network stands for; diffusers reads it with the current noise level
    x0 = M + S * torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = ddim_inversion(gaussian_model("v"), SCHEDULE, x0, 20, "v")
    torch.testing.assert_close(ours, ddim_inversion(gaussian_model("eps"), SCHEDULE, x0, 20), rtol=0, atol=1e-10)
    theirs = float64_diffusers(
        DDIMInverseScheduler,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
    )
    theirs.set_timesteps(20)
    x = x0
    for t in theirs.timesteps:
        x = theirs.step(gaussian_model("v")(x, t), t, x).prev_sample
    assert not torch.allclose(ours, x, rtol=0, atol=1e-3)
