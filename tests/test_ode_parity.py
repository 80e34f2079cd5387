"""Parity of the sigma-view samplers and PLMS with two independent implementations, over whole
trajectories in float64 with a deterministic stand-in network (1e-10):

- diffusers (test-only): EulerDiscreteScheduler, EulerAncestralDiscreteScheduler (the same noise
  from one generator), HeunDiscreteScheduler, DPMSolverMultistepScheduler (dpmsolver++, order 2)
  and PNDMScheduler(skip_prk_steps=True). diffusers computes its sigmas and timesteps with
  np.float32 and torch.float32; `float64_everywhere` points both names at float64 while diffusers
  runs, so its own formulas are compared rather than float32 rounding.
- k-diffusion (test-only): sample_euler, sample_heun, sample_dpmpp_2m with its
  DiscreteEpsDDPMDenoiser / DiscreteVDDPMDenoiser wrappers. k_diffusion's __init__ imports its
  training stack (jsonmerge, clean-fid, wandb, ...), which is not installed; `k_diffusion_modules`
  registers an empty package and imports only its sampling.py and external.py from the installed
  files. Run with the default dtype float64, so its torch.linspace ramps are float64.

Where minildm differs on purpose (each shown by a test below):
  - diffusers' Euler and Heun start linspace and trailing grids from x = sigma_max z (the
    variance-exploding prior); minildm always starts from x_t = z ~ N(0, I), x = sqrt(1 +
    sigma_max^2) z. The trajectories are compared from the same start.
  - DPMSolverMultistepScheduler with use_karras_sigmas rounds the timestep it gives the network
    to an integer, while its solver uses the unrounded sigma; minildm (like k-diffusion) gives the
    network the real-valued timestep of the sigma. With a network that rounds t itself, the two agree.
  - DPMSolverMultistepScheduler defines leading and linspace grids over n + 1 points; trailing
    spacing is the same as minildm's and is the one compared.
"""

import contextlib
import importlib
import importlib.util
import inspect
import sys
import types

import numpy as np
import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
)

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
from minildm.diffusion.sigmas import to_sigma_view

# diffusers calls np.array on torch tensors, which numpy 2 warns about; nothing minildm can change
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
TOLERANCE = {"rtol": 0, "atol": 1e-10}
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
SCHEDULE = NoiseSchedule(ScheduleConfig(**SD))


@contextlib.contextmanager
def float64_everywhere():
    """torch.float32 and np.float32 mean float64, and the default dtype is float64, inside."""
    torch_float32, numpy_float32, default = torch.float32, np.float32, torch.get_default_dtype()
    torch.float32, np.float32 = torch.float64, np.float64
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.float32, np.float32 = torch_float32, numpy_float32
        torch.set_default_dtype(default)


def k_diffusion_modules():
    """k_diffusion.sampling and k_diffusion.external, without running k_diffusion/__init__.py."""
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = package
    return importlib.import_module("k_diffusion.sampling"), importlib.import_module("k_diffusion.external")


def network(x_t, t):
    """A stand-in network: a fixed smooth function of (x_t, t), t a number or a (B,) tensor."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, *([1] * (x_t.ndim - 1)))
    return torch.tanh(x_t) * (1 + t / 1000) + 0.1 * torch.sin(t / 100)


def start():
    return torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def run_ours(sampler, z, model=network, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x_t = z
    for t in sampler.timesteps:
        x_t = sampler.step(model(x_t, t), t, x_t, generator)
    return x_t


def run_diffusers(scheduler, n, z, seed=1, model=network):
    """diffusers' loop (as in its pipelines) from x_t = z at its first sigma, in float64."""
    generator = torch.Generator().manual_seed(seed)
    with float64_everywhere():
        scheduler.set_timesteps(n)
        sigma_max = scheduler.sigmas[0].item() if hasattr(scheduler, "sigmas") else 0.0
        uses_sigma_view = isinstance(
            scheduler, (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler)
        )
        x = to_sigma_view(z, sigma_max) if uses_sigma_view else z
        timesteps = scheduler.timesteps
        for t in timesteps:
            model_input = scheduler.scale_model_input(x, t)
            noise = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
            x = scheduler.step(model(model_input, t), t, x, **noise).prev_sample
    return scheduler, timesteps, x


def diffusers_scheduler(scheduler_class, prediction_type, **config):
    with float64_everywhere():
        return scheduler_class(**SD, prediction_type=DIFFUSERS_PREDICTION[prediction_type], **config)


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize(
    "sampler_class,scheduler_class", [(EulerSampler, EulerDiscreteScheduler), (HeunSampler, HeunDiscreteScheduler)]
)
def test_euler_and_heun_match_diffusers(sampler_class, scheduler_class, spacing, prediction_type, karras):
    ours = sampler_class(SCHEDULE, 10, prediction_type, spacing, karras=karras)
    theirs = diffusers_scheduler(scheduler_class, prediction_type, timestep_spacing=spacing, use_karras_sigmas=karras)
    z = start()
    theirs, their_timesteps, expected = run_diffusers(theirs, 10, z)
    torch.testing.assert_close(ours.timesteps, their_timesteps, **TOLERANCE)
    their_sigmas = theirs.sigmas
    if sampler_class is HeunSampler:
        # diffusers lists the sigma of each evaluation: s_0, s_1, s_1, ..., s_{n-1}, s_{n-1}, 0
        their_sigmas = torch.cat([their_sigmas[:1], their_sigmas[1:-1:2], their_sigmas[-1:]])
    torch.testing.assert_close(ours.sigmas, their_sigmas, **TOLERANCE)
    torch.testing.assert_close(run_ours(ours, z), expected, **TOLERANCE)


def test_diffusers_starts_trailing_and_linspace_grids_from_the_variance_exploding_prior():
    theirs = diffusers_scheduler(EulerDiscreteScheduler, "eps", timestep_spacing="trailing")
    with float64_everywhere():
        theirs.set_timesteps(10)
    sigma_max = EulerSampler(SCHEDULE, 10, "eps", "trailing").sigmas[0].item()
    assert float(theirs.init_noise_sigma) == pytest.approx(sigma_max, rel=1e-6)
    # minildm's x_T = z in the pipelines' (variance-preserving) x_t, x = sqrt(1 + sigma_max^2) z
    assert to_sigma_view(torch.ones(1, dtype=torch.float64), sigma_max).item() == pytest.approx(
        (1 + sigma_max**2) ** 0.5, rel=1e-12
    )


@pytest.mark.parametrize("prediction_type", ["eps", "v"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_euler_ancestral_matches_diffusers_with_the_same_noise(spacing, prediction_type):
    ours = EulerAncestralSampler(SCHEDULE, 10, prediction_type, spacing)
    theirs = diffusers_scheduler(EulerAncestralDiscreteScheduler, prediction_type, timestep_spacing=spacing)
    z = start()
    _, their_timesteps, expected = run_diffusers(theirs, 10, z, seed=5)
    torch.testing.assert_close(ours.timesteps, their_timesteps, **TOLERANCE)
    sampled = run_ours(ours, z, seed=5)
    torch.testing.assert_close(sampled, expected, **TOLERANCE)
    assert not torch.allclose(
        sampled, run_ours(EulerAncestralSampler(SCHEDULE, 10, prediction_type, spacing), z, seed=6)
    )


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("num_steps", [1, 2, 10, 25])
def test_dpm_solver_pp_2m_matches_diffusers(num_steps, prediction_type):
    ours = DPMSolverPlusPlus2MSampler(SCHEDULE, num_steps, prediction_type, "trailing")
    theirs = diffusers_scheduler(
        DPMSolverMultistepScheduler,
        prediction_type,
        timestep_spacing="trailing",
        algorithm_type="dpmsolver++",
        solver_order=2,
    )
    z = start()
    _, their_timesteps, expected = run_diffusers(theirs, num_steps, z)
    assert ours.timesteps.tolist() == their_timesteps.tolist()
    torch.testing.assert_close(run_ours(ours, z), expected, **TOLERANCE)


@pytest.mark.parametrize("prediction_type", ["eps", "v"])
def test_dpm_solver_pp_2m_with_karras_sigmas_matches_diffusers_given_its_rounded_timesteps(prediction_type):
    # diffusers' Karras grid spans sigma(0) ... sigma(T-1) whatever the spacing: minildm's linspace grid
    ours = DPMSolverPlusPlus2MSampler(SCHEDULE, 10, prediction_type, "linspace", karras=True)
    theirs = diffusers_scheduler(
        DPMSolverMultistepScheduler,
        prediction_type,
        algorithm_type="dpmsolver++",
        solver_order=2,
        use_karras_sigmas=True,
    )
    z = start()
    _, their_timesteps, expected = run_diffusers(theirs, 10, z)
    assert their_timesteps.dtype == torch.int64 and ours.timesteps.dtype == torch.float64
    torch.testing.assert_close(ours.timesteps.round().long(), their_timesteps, rtol=0, atol=0)
    assert (ours.timesteps - ours.timesteps.round()).abs().max() > 0.01  # real-valued timesteps in minildm

    def rounding_network(x_t, t):
        return network(x_t, round(float(t)))

    torch.testing.assert_close(run_ours(ours, z, model=rounding_network), expected, **TOLERANCE)
    assert not torch.allclose(run_ours(ours, z), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("final_alpha_bar_is_one", [True, False])
@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("num_steps", [1, 2, 3, 4, 5, 20])
def test_plms_matches_diffusers_pndm_without_runge_kutta_steps(num_steps, steps_offset, final_alpha_bar_is_one):
    ours = PLMSSampler(
        SCHEDULE, num_steps, "eps", "leading", steps_offset, final_alpha_bar_is_one=final_alpha_bar_is_one
    )
    theirs = diffusers_scheduler(
        PNDMScheduler, "eps", skip_prk_steps=True, steps_offset=steps_offset, set_alpha_to_one=final_alpha_bar_is_one
    )
    z = start()
    _, their_timesteps, expected = run_diffusers(theirs, num_steps, z)
    assert ours.timesteps.tolist() == their_timesteps.tolist()
    torch.testing.assert_close(run_ours(ours, z), expected, **TOLERANCE)


def test_plms_on_a_v_model_is_plms_on_the_eps_it_implies_at_each_evaluation():
    # minildm reads each v output as eps at its own (x_t, t); diffusers combines the raw v outputs
    # of earlier steps and converts the combination at the current x_t, which differs
    def implied_eps(x_t, t):
        alpha_bar = SCHEDULE.alphas_cumprod[int(t)].item()
        # eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v
        return (1 - alpha_bar) ** 0.5 * x_t + alpha_bar**0.5 * network(x_t, t)

    z = start()
    sampled = run_ours(PLMSSampler(SCHEDULE, 10, "v"), z)
    _, _, expected = run_diffusers(
        diffusers_scheduler(PNDMScheduler, "eps", skip_prk_steps=True, set_alpha_to_one=True), 10, z, model=implied_eps
    )
    torch.testing.assert_close(sampled, expected, **TOLERANCE)
    _, _, diffusers_v = run_diffusers(
        diffusers_scheduler(PNDMScheduler, "v", skip_prk_steps=True, set_alpha_to_one=True), 10, z
    )
    assert not torch.allclose(sampled, diffusers_v, rtol=0, atol=1e-4)


def test_plms_first_step_is_ddim_and_later_steps_are_not():
    plms, ddim = PLMSSampler(SCHEDULE, 10), DDIMSampler(SCHEDULE, 10)
    z = start()
    assert torch.equal(plms.step(network(z, 900), 900, z), ddim.step(network(z, 900), 900, z))


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("prediction_type", ["eps", "v"])
@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m"])
def test_euler_heun_dpm_solver_pp_match_k_diffusion(name, prediction_type, karras):
    sampling, external = k_diffusion_modules()
    wrapper = {"eps": external.DiscreteEpsDDPMDenoiser, "v": external.DiscreteVDDPMDenoiser}[prediction_type]
    sample = {"euler": sampling.sample_euler, "heun": sampling.sample_heun, "dpmpp_2m": sampling.sample_dpmpp_2m}[name]
    sampler_class = {"euler": EulerSampler, "heun": HeunSampler, "dpmpp_2m": DPMSolverPlusPlus2MSampler}[name]
    # k-diffusion's linspace in t over [T-1, 0]; with n = 10 its timesteps are the integers 999, 888, ..., 0
    ours = sampler_class(SCHEDULE, 10, prediction_type, "linspace", karras=karras)
    z = start()
    with float64_everywhere():
        model = wrapper(network, SCHEDULE.alphas_cumprod, quantize=False)
        if karras:
            sigmas = sampling.get_sigmas_karras(10, model.sigma_min.item(), model.sigma_max.item())
        else:
            sigmas = model.get_sigmas(10)
        expected = sample(model, to_sigma_view(z, sigmas[0].item()), sigmas, disable=True)
    torch.testing.assert_close(ours.sigmas, sigmas, **TOLERANCE)
    torch.testing.assert_close(run_ours(ours, z), expected, **TOLERANCE)


def test_diffusers_pndm_steps_off_its_own_linspace_grid():
    # as its DDIM (test_diffusion_parity.py): from 999 diffusers' 10-step linspace PLMS lands on
    # the noise level of t = 899, while its next step is at 888; minildm steps to 888
    theirs = diffusers_scheduler(
        PNDMScheduler, "eps", skip_prk_steps=True, timestep_spacing="linspace", set_alpha_to_one=True
    )
    with float64_everywhere():
        theirs.set_timesteps(10)
    assert theirs.timesteps[:2].tolist() == [999, 888]
    x0, eps = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    x_t = SCHEDULE.q_sample(x0, torch.tensor([999, 999]), eps)
    with float64_everywhere():
        stepped = theirs.step(eps, 999, x_t).prev_sample
    torch.testing.assert_close(stepped, SCHEDULE.q_sample(x0, torch.tensor([899, 899]), eps), **TOLERANCE)
    ours = PLMSSampler(SCHEDULE, 10, "eps", "linspace").step(eps, 999, x_t)
    torch.testing.assert_close(ours, SCHEDULE.q_sample(x0, torch.tensor([888, 888]), eps), **TOLERANCE)


def test_zero_terminal_snr_starts_at_sigma_inf_where_diffusers_uses_alpha_bar_2_to_the_minus_24():
    zero_snr = NoiseSchedule(ScheduleConfig(**SD, zero_terminal_snr=True))
    z = start()
    # the exact limit: minildm's Euler from sigma = inf is DDIM from t = T-1, at every step
    euler, ddim = EulerSampler(zero_snr, 10, "v", "trailing"), DDIMSampler(zero_snr, 10, "v", "trailing")
    assert euler.sigmas[0].item() == float("inf")
    sampled = run_ours(euler, z)
    torch.testing.assert_close(sampled, run_ours(ddim, z), **TOLERANCE)
    # Heun takes an Euler step out of sigma = inf: 2n - 2 evaluations
    assert len(HeunSampler(zero_snr, 10, "v", "trailing").timesteps) == 18
    # diffusers' sigma_max = sqrt((1 - 2^-24) / 2^-24) ~ 4096 lands close to, not on, the limit
    theirs = diffusers_scheduler(EulerDiscreteScheduler, "v", timestep_spacing="trailing", rescale_betas_zero_snr=True)
    theirs, _, expected = run_diffusers(theirs, 10, z)
    assert theirs.sigmas[0].item() == pytest.approx(4096, rel=1e-6)
    difference = (sampled - expected).abs().max().item()
    assert 1e-9 < difference < 1e-3
