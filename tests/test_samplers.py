"""Identities of the DDPM and DDIM samplers and of classifier-free guidance
(minildm/diffusion/ddpm.py, ddim.py, guidance.py, timesteps.py)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minildm.diffusion import (
    DDIMSampler,
    DDPMSampler,
    NoiseSchedule,
    ScheduleConfig,
    classifier_free_guidance,
)

SCHEDULE = NoiseSchedule(
    ScheduleConfig(num_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
)
SMALL = NoiseSchedule(ScheduleConfig(num_timesteps=100, beta_schedule="linear", beta_start=1e-3, beta_end=0.1))


@pytest.fixture(autouse=True)
def _one_thread():
    # these tests run many tiny matrix products, which more threads only slow down on a shared CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_ddim_with_eta_1_on_the_full_grid_is_ddpm_with_the_posterior_variance():
    # DDIM eq. 16 with eta = 1 and t_prev = t - 1: sigma^2 = beta_tilde_t, and the mean is mu_tilde_t (DDPM eq. 7)
    ddim = DDIMSampler(SMALL, num_inference_steps=100, eta=1.0)
    ddpm = DDPMSampler(SMALL, variance_type="fixed_small")
    assert torch.equal(ddim.timesteps, ddpm.timesteps)
    x_t, eps = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    for t in range(100):
        torch.testing.assert_close(
            ddim.step(eps, t, x_t, seeded(t)), ddpm.step(eps, t, x_t, seeded(t)), rtol=1e-10, atol=1e-10
        )


def test_ddim_with_eta_1_has_the_posterior_variance_on_many_samples():
    ddim = DDIMSampler(SMALL, num_inference_steps=100, eta=1.0)
    t, n = 40, 40000
    x_t = torch.full((n, 1), 0.3, dtype=torch.float64)
    x_prev = ddim.step(torch.full((n, 1), -0.2, dtype=torch.float64), t, x_t, seeded(0))
    expected = SMALL.posterior_variance[t].item()
    assert abs(x_prev.var().item() / expected - 1) < 5 * math.sqrt(2 / n)


def test_ddpm_step_is_the_posterior_of_its_x0_prediction():
    # on the full grid the DDPM step samples q(x_{t-1} | x_t, x0_hat) with DDPM eq. 7's mean
    x_t, eps = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    for variance_type in ("fixed_small", "fixed_large"):
        sampler = DDPMSampler(SMALL, variance_type=variance_type)
        for t in (1, 50, 99):
            ts = torch.full((3,), t)
            mean, variance, _ = SMALL.q_posterior(SMALL.x0_from_eps(x_t, ts, eps), x_t, ts)
            if variance_type == "fixed_large":
                variance = SMALL.betas[t]
            noise = torch.randn(3, 5, generator=seeded(t), dtype=torch.float64)
            expected = mean + variance.sqrt() * noise
            torch.testing.assert_close(sampler.step(eps, t, x_t, seeded(t)), expected, rtol=1e-10, atol=1e-10)
        # the last step returns the mean: no noise is added after t = 0 (DDPM Algorithm 2)
        mean, _, _ = SMALL.q_posterior(
            SMALL.x0_from_eps(x_t, torch.zeros(3, dtype=torch.long), eps), x_t, torch.zeros(3, dtype=torch.long)
        )
        torch.testing.assert_close(sampler.step(eps, 0, x_t, seeded(0)), mean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_ddim_eta_0_is_deterministic_and_recovers_the_true_x0(spacing, prediction_type):
    x0 = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    sampler = DDIMSampler(
        SCHEDULE, num_inference_steps=20, eta=0.0, prediction_type=prediction_type, timestep_spacing=spacing
    )

    def oracle(x_t, t):
        # the ideal network for a data set of one point x0, written in its prediction type
        ts = torch.full((2,), int(t))
        eps = SCHEDULE.eps_from_x0(x_t, ts, x0)
        return {"eps": eps, "x0": x0, "v": SCHEDULE.v_from_x0_eps(x0, eps, ts)}[prediction_type]

    x_t = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    generator = seeded(0)
    state = generator.get_state()
    for t in sampler.timesteps:
        x_next = sampler.step(oracle(x_t, t), t, x_t, generator)
        assert torch.equal(x_next, sampler.step(oracle(x_t, t), t, x_t))
        x_t = x_next
    assert torch.equal(generator.get_state(), state), "eta = 0 must draw no noise"
    torch.testing.assert_close(x_t, x0, rtol=0, atol=1e-10)


def test_ddim_eta_0_keeps_the_noise_of_a_forward_sample():
    # x_t = q_sample(x0, t, eps) steps to exactly q_sample(x0, t_prev, eps) (DDIM eq. 12 with sigma = 0)
    sampler = DDIMSampler(SCHEDULE, num_inference_steps=10)
    x0, eps = torch.randn(2, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    x_t = SCHEDULE.q_sample(x0, torch.full((2,), 500), eps)
    x_prev = sampler.step(eps, 500, x_t)
    torch.testing.assert_close(x_prev, SCHEDULE.q_sample(x0, torch.full((2,), 400), eps), rtol=0, atol=1e-12)


def test_ddim_draws_a_gaussian_data_distribution_with_the_exact_eps_model():
    # data x0 ~ N(m, s^2) in 1-D: x_t ~ N(a m, a^2 s^2 + 1 - a^2) with a = sqrt(alpha_bar_t), and
    # the ideal eps-model is E[eps | x_t] = sqrt(1 - a^2) (x_t - a m) / (a^2 s^2 + 1 - a^2)
    m, s, n = 1.5, 0.5, 20000

    def ideal_eps(x_t, t):
        a2 = SMALL.alphas_cumprod[int(t)].item()
        return math.sqrt(1 - a2) * (x_t - math.sqrt(a2) * m) / (a2 * s**2 + 1 - a2)

    std_errors = []
    for num_steps in (5, 20, 100):
        sampler = DDIMSampler(SMALL, num_inference_steps=num_steps, timestep_spacing="trailing")
        # start from the exact marginal at t = T - 1: N(0, 1) would be off by a m (~0.12 here), a bias
        # that the deterministic DDIM carries to x_0 (the terminal-SNR flaw of Lin et al. 2023)
        a2 = SMALL.alphas_cumprod[-1].item()
        x_t = math.sqrt(a2) * m + math.sqrt(a2 * s**2 + 1 - a2) * torch.randn(
            n, 1, generator=seeded(0), dtype=torch.float64
        )
        for t in sampler.timesteps:
            x_t = sampler.step(ideal_eps(x_t, t), t, x_t)
        assert abs(x_t.mean().item() - m) < 5 * s / math.sqrt(n)
        std_errors.append(abs(x_t.std().item() - s))
    # the spread is off by DDIM's discretization error, which shrinks with the number of steps
    assert std_errors[0] > std_errors[1] > std_errors[2]
    assert std_errors[2] < 0.01


def test_timesteps_for_strength_keeps_the_last_steps():
    sampler = DDIMSampler(SCHEDULE, num_inference_steps=10)
    assert torch.equal(sampler.timesteps_for_strength(1.0), sampler.timesteps)
    assert len(sampler.timesteps_for_strength(0.0)) == 0
    assert sampler.timesteps_for_strength(0.55).tolist() == [400, 300, 200, 100, 0]
    assert DDPMSampler(SMALL).timesteps_for_strength(0.3).tolist() == list(range(29, -1, -1))
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\], got 1.5"):
        sampler.timesteps_for_strength(1.5)


def test_timestep_grids_for_each_spacing():
    def grid(spacing: str, n: int, offset: int = 0) -> list[int]:
        return DDIMSampler(SCHEDULE, n, timestep_spacing=spacing, steps_offset=offset).timesteps.tolist()

    assert grid("leading", 10) == list(range(900, -1, -100))
    assert grid("leading", 10, offset=1) == list(range(901, 0, -100))
    assert grid("trailing", 10) == list(range(999, 0, -100))
    assert grid("linspace", 10) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    for spacing in ("leading", "trailing", "linspace"):
        assert grid(spacing, 1000) == list(range(999, -1, -1))


def test_ddpm_accepts_any_t_on_the_full_chain_and_only_grid_t_on_a_subset():
    x = torch.randn(1, 4)
    DDPMSampler(SMALL).step(x, 37, x)
    with pytest.raises(
        ValueError,
        match=r"t must be one of the sampler's 10 timesteps \(90, 80, 70, 60, 50, 40, 30, 20, 10, 0\), got 37",
    ):
        DDPMSampler(SMALL, num_inference_steps=10).step(x, 37, x)
    with pytest.raises(
        ValueError, match=r"t must be one of the sampler's 100 timesteps \(99, 98, 97, \.\.\., 2, 1, 0\), got 100"
    ):
        DDPMSampler(SMALL).step(x, 100, x)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(-5, 15))
def test_guidance_scale_0_is_unconditional_1_is_conditional(seed, scale):
    generator = seeded(seed)
    uncond, cond = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    assert torch.equal(classifier_free_guidance(uncond, cond, 0.0), uncond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 1.0), cond)
    # linear in the scale: w extrapolates along cond - uncond
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, scale), uncond + scale * (cond - uncond))


def test_bad_sampler_input_raises_value_errors_that_say_what_was_expected():
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\].*got -0.1"):
        DDIMSampler(SCHEDULE, eta=-0.1)
    with pytest.raises(ValueError, match=r"num_inference_steps must lie in \[1, 1000\].*got 1001"):
        DDIMSampler(SCHEDULE, num_inference_steps=1001)
    with pytest.raises(ValueError, match=r"num_inference_steps must lie in \[1, 100\].*got 0"):
        DDPMSampler(SMALL, num_inference_steps=0)
    with pytest.raises(ValueError, match="timestep_spacing must be one of"):
        DDIMSampler(SCHEDULE, timestep_spacing="uniform")
    with pytest.raises(ValueError, match="prediction_type must be 'eps', 'x0' or 'v', got 'epsilon'"):
        DDIMSampler(SCHEDULE, prediction_type="epsilon")
    with pytest.raises(ValueError, match="variance_type must be one of"):
        DDPMSampler(SCHEDULE, variance_type="learned")
    with pytest.raises(ValueError, match="steps_offset=100 moves the timesteps outside"):
        DDIMSampler(SCHEDULE, num_inference_steps=10, timestep_spacing="leading", steps_offset=100)
    with pytest.raises(ValueError, match="must have the same shape"):
        classifier_free_guidance(torch.zeros(2, 3), torch.zeros(3, 2), 7.5)


def test_zero_terminal_snr_with_eps_prediction_starting_at_T_minus_1_is_refused():
    # alpha_bar_{T-1} = 0: x0_hat = (x_t - eps) / 0 would make every later step NaN
    zero_snr = NoiseSchedule(ScheduleConfig(num_timesteps=100, zero_terminal_snr=True))
    for sampler_class in (DDIMSampler, DDPMSampler):
        with pytest.raises(ValueError, match=r"eps-prediction cannot start at t = 99.*use prediction_type 'v' or 'x0'"):
            sampler_class(zero_snr, 10, "eps", "trailing")
        with pytest.raises(ValueError, match=r"eps-prediction cannot start at t = 99"):
            sampler_class(zero_snr)  # all T steps start at T - 1 too
    x = torch.randn(2, 3, dtype=torch.float64)
    for sampler in (DDIMSampler(zero_snr, 10, "v", "trailing"), DDIMSampler(zero_snr, 10, "eps", "leading")):
        for t in sampler.timesteps:
            x = sampler.step(torch.tanh(x), t, x)
        assert torch.isfinite(x).all()


def test_every_sampler_shares_the_constructor_order_and_previous_timestep():
    for sampler in (DDIMSampler(SMALL, 10, "v", "trailing", 0, True), DDPMSampler(SMALL, 10, "v", "trailing", 0, True)):
        assert sampler.prediction_type == "v" and sampler.clip_sample
        assert sampler.timesteps.tolist() == list(range(99, 0, -10))
        assert [sampler.previous_timestep(t) for t in sampler.timesteps] == [*range(89, 0, -10), -1]
