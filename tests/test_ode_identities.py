"""Sampling is solving an ODE (minildm/diffusion/sigmas.py and the samplers of the sigma view):
identities between samplers in float64, and the measured order of Euler, Heun and DPM-Solver++
on a Gaussian data distribution, whose denoiser and ODE solution are known in closed form."""

import itertools
import math

import pytest
import torch

from minildm.diffusion import (
    DDIMSampler,
    DPMSolverPlusPlus2MSampler,
    EulerAncestralSampler,
    EulerSampler,
    HeunSampler,
    NoiseSchedule,
    PLMSSampler,
    ScheduleConfig,
)
from minildm.diffusion.sampler import predict_x0_eps
from minildm.diffusion.sigmas import (
    alpha_bar_of_sigma,
    from_sigma_view,
    karras_sigmas,
    ode_derivative,
    schedule_sigmas,
    sigma_of_timestep,
    timestep_of_sigma,
    to_sigma_view,
)

SD = NoiseSchedule(ScheduleConfig(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012))
TOLERANCE = {"rtol": 0, "atol": 1e-10}


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def random_pair(t, shape=(2, 3, 4)):
    """A model output and an x_t that differ at each t."""
    generator = seeded(1000 + int(t))
    return torch.randn(shape, generator=generator, dtype=torch.float64), torch.randn(
        shape, generator=generator, dtype=torch.float64
    )


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_a_ddim_step_with_eta_0_is_an_euler_step_of_the_ode_in_sigma(prediction_type, spacing):
    ddim = DDIMSampler(SD, 10, prediction_type, spacing)
    euler = EulerSampler(SD, 10, prediction_type, spacing)
    sigmas = schedule_sigmas(SD)
    for i, t in enumerate(ddim.timesteps.tolist()):
        model_output, x_t = random_pair(t)
        # the ODE written out: x = x_t sqrt(1 + sigma^2), D(x; sigma), x_next = x + (sigma_next - sigma) (x - D) / sigma
        sigma = sigmas[t].item()
        sigma_next = euler.sigmas[i + 1].item()
        x = to_sigma_view(x_t, sigma)
        denoised, _ = predict_x0_eps(prediction_type, model_output, x_t, alpha_bar_of_sigma(sigma))
        x_next = x + (sigma_next - sigma) * ode_derivative(x, denoised, sigma)
        expected = ddim.step(model_output, t, x_t)
        torch.testing.assert_close(from_sigma_view(x_next, sigma_next), expected, **TOLERANCE)
        torch.testing.assert_close(euler.step(model_output, t, x_t), expected, **TOLERANCE)


@pytest.mark.parametrize("prediction_type", ["eps", "v"])
def test_first_order_dpm_solver_pp_is_ddim(prediction_type):
    ddim = DDIMSampler(SD, 12, prediction_type, "trailing")
    dpm = DPMSolverPlusPlus2MSampler(SD, 12, prediction_type, "trailing")
    for t in ddim.timesteps.tolist():
        model_output, x_t = random_pair(t)
        dpm.reset()  # no history: the first-order update
        torch.testing.assert_close(dpm.step(model_output, t, x_t), ddim.step(model_output, t, x_t), **TOLERANCE)


def test_dpm_solver_pp_uses_its_history_and_euler_ancestral_its_noise():
    # the second-order step differs from DDIM; Euler ancestral with a seed differs from Euler
    dpm, ddim = DPMSolverPlusPlus2MSampler(SD, 5, "eps", "trailing"), DDIMSampler(SD, 5, "eps", "trailing")
    x_dpm = x_ddim = torch.randn(2, 3, dtype=torch.float64)
    differences = []
    for t in dpm.timesteps.tolist():
        x_dpm, x_ddim = dpm.step(torch.tanh(x_dpm), t, x_dpm), ddim.step(torch.tanh(x_ddim), t, x_ddim)
        differences.append((x_dpm - x_ddim).abs().max().item())
    assert differences[0] < 1e-12 and all(d > 1e-6 for d in differences[1:])
    model_output, x_t = random_pair(999)
    ancestral = EulerAncestralSampler(SD, 5, "eps", "trailing")
    first = ancestral.step(model_output, 999, x_t, seeded(0))
    assert torch.equal(EulerAncestralSampler(SD, 5, "eps", "trailing").step(model_output, 999, x_t, seeded(0)), first)
    assert not torch.allclose(first, EulerSampler(SD, 5, "eps", "trailing").step(model_output, 999, x_t))


def test_sigma_view_conversions_and_timestep_interpolation():
    sigmas = schedule_sigmas(SD)
    torch.testing.assert_close(1 / (1 + sigmas**2), SD.alphas_cumprod, **TOLERANCE)
    # the training grid maps to itself; a sigma between two grid points to a fractional t, and back
    grid = timestep_of_sigma(sigmas, sigmas)
    torch.testing.assert_close(grid, torch.arange(1000, dtype=torch.float64), **TOLERANCE)
    between = math.exp((math.log(sigmas[400].item()) + math.log(sigmas[401].item())) / 2)
    assert timestep_of_sigma(torch.tensor([between], dtype=torch.float64), sigmas).item() == pytest.approx(
        400.5, abs=1e-10
    )
    assert sigma_of_timestep(400.5, sigmas) == pytest.approx(between, rel=1e-12)
    karras = karras_sigmas(sigmas[0].item(), sigmas[-1].item(), 10)
    assert karras[0].item() == pytest.approx(sigmas[-1].item()) and karras[-1].item() == pytest.approx(sigmas[0].item())
    # rho = 7: sigma^(1/7) is evenly spaced
    inverse_rho = karras ** (1 / 7)
    torch.testing.assert_close(
        inverse_rho.diff(), torch.full((9,), (inverse_rho[1] - inverse_rho[0]).item(), dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="Karras sigmas need 0 < sigma_min <= sigma_max < inf"):
        karras_sigmas(0.0, 10.0, 5)


# ---- a Gaussian data distribution: x_0 ~ N(m, s^2) ------------------------------------------
# In the sigma view x = x_0 + sigma eps ~ N(m, s^2 + sigma^2), the ideal denoiser is
# D(x; sigma) = m + s^2 / (s^2 + sigma^2) (x - m), and the ODE dx/dsigma = (x - D) / sigma moves x
# along x(sigma') - m = sqrt((s^2 + sigma'^2) / (s^2 + sigma^2)) (x(sigma) - m).
M, S = 0.7, 0.4


def gaussian_eps_model(sampler):
    """The exact eps-prediction of the Gaussian data, at (x_t, t) for any real t."""

    def model(x_t, t):
        sigma = sigma_of_timestep(float(t), sampler.train_sigmas)
        x = to_sigma_view(x_t, sigma)
        denoised = M + S**2 / (S**2 + sigma**2) * (x - M)
        # eps = (x - D) / sigma
        return (x - denoised) / sigma

    return model


def ode_error(sampler_class, n):
    """max |x - x_exact| at sigma_{n-1} = sigma(0), after all steps but the last (to sigma = 0)."""
    sampler = sampler_class(SD, n, "eps", "linspace", karras=True)
    model = gaussian_eps_model(sampler)
    x_start = torch.linspace(-3, 3, 7, dtype=torch.float64)
    x_t = x_start
    for position, t in enumerate(sampler.timesteps.tolist()):
        if sampler.plan.entries[position][0] == n - 1:
            break
        x_t = sampler.step(model(x_t, t), t, x_t)
    sigma_max, sigma_end = sampler.sigmas[0].item(), sampler.sigmas[n - 1].item()
    exact = M + math.sqrt((S**2 + sigma_end**2) / (S**2 + sigma_max**2)) * (to_sigma_view(x_start, sigma_max) - M)
    return (to_sigma_view(x_t, sigma_end) - exact).abs().max().item()


@pytest.mark.parametrize("sampler_class,order", [(EulerSampler, 1), (HeunSampler, 2), (DPMSolverPlusPlus2MSampler, 2)])
def test_global_error_falls_with_the_order_of_the_solver(sampler_class, order):
    errors = [ode_error(sampler_class, n) for n in (10, 20, 40, 80)]
    ratios = [coarse / fine for coarse, fine in itertools.pairwise(errors)]
    measured_orders = [math.log2(ratio) for ratio in ratios]
    # Euler: the error halves when the steps double (order 1); Heun and DPM-Solver++(2M): a quarter
    assert all(abs(measured - order) < 0.15 for measured in measured_orders[1:]), measured_orders


def test_a_sampler_reused_or_started_mid_grid_starts_afresh():
    # Heun lists 2n - 1 evaluations; a second run, or img2img's truncated grid, starts at a first stage
    heun = HeunSampler(SD, 4, "eps", "linspace")
    assert len(heun.timesteps) == 7
    assert heun.timesteps_for_strength(0.5).tolist() == heun.timesteps[4:].tolist()
    runs, previous = [], []
    for _ in range(2):
        x_t = torch.ones(1, 3, dtype=torch.float64)
        for t in heun.timesteps:
            # the noise level this step returns (what inpainting noises the known part to)
            previous.append(heun.previous_timestep(t))
            x_t = heun.step(torch.tanh(x_t), t, x_t)
        runs.append(x_t)
    assert torch.equal(runs[0], runs[1])
    assert previous[:7] == previous[7:] == [666.0, 666.0, 333.0, 333.0, 0.0, 0.0, -1.0]
    plms = PLMSSampler(SD, 4)
    assert plms.timesteps.tolist() == [750, 500, 500, 250, 0]
    assert plms.previous_timestep(750) == 500 and plms.previous_timestep(250) == 0 and plms.previous_timestep(0) == -1
