"""Identities of the forward process, the posterior, the prediction-target conversions and the
training loss (minildm/diffusion/schedule.py, loss.py)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minildm.diffusion import (
    NoiseSchedule,
    ScheduleConfig,
    diffusion_loss,
    min_snr_weight,
)

T = 1000
CONFIGS = {
    "linear": ScheduleConfig(num_timesteps=T, beta_schedule="linear"),
    "scaled_linear": ScheduleConfig(num_timesteps=T, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "cosine": ScheduleConfig(num_timesteps=T, beta_schedule="cosine"),
    "scaled_linear_zero_snr": ScheduleConfig(
        num_timesteps=T, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, zero_terminal_snr=True
    ),
}
SCHEDULES = {name: NoiseSchedule(config) for name, config in CONFIGS.items()}
schedule_names = st.sampled_from(sorted(SCHEDULES))
# timesteps where every conversion is defined (alpha_bar in (0, 1); zero-SNR makes alpha_bar_{T-1} = 0)
inner_t = st.integers(min_value=0, max_value=T - 2)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_q_sample_moments_equal_iterated_forward_steps(name):
    # iterate q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t): mean_t = sqrt(alpha_t) mean_{t-1},
    # var_t = alpha_t var_{t-1} + beta_t, starting from the point x_0 (mean x_0, variance 0)
    schedule = SCHEDULES[name]
    x0 = 0.7
    mean, var = x0, 0.0
    means, variances = [], []
    for alpha, beta in zip(schedule.alphas.tolist(), schedule.betas.tolist()):
        mean, var = math.sqrt(alpha) * mean, alpha * var + beta
        means.append(mean)
        variances.append(var)
    # closed form (DDPM eq. 4): q_sample with noise 0 is the mean, its noise coefficient the std
    t = torch.arange(T)
    x0s = torch.full((T,), x0, dtype=torch.float64)
    closed_mean = schedule.q_sample(x0s, t, torch.zeros_like(x0s))
    closed_std = schedule.q_sample(torch.zeros_like(x0s), t, torch.ones_like(x0s))
    torch.testing.assert_close(closed_mean, torch.tensor(means, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(closed_std**2, torch.tensor(variances, dtype=torch.float64), rtol=0, atol=1e-12)


def test_q_sample_samples_match_iterated_forward_chain():
    schedule = NoiseSchedule(ScheduleConfig(num_timesteps=50, beta_schedule="linear", beta_start=1e-3, beta_end=0.2))
    n = 20000
    x0 = torch.randn(n, dtype=torch.float64) * 0.5 + 1.0  # data: N(1, 0.25)
    x = x0.clone()
    for t in range(50):
        x = schedule.alphas[t].sqrt() * x + schedule.betas[t].sqrt() * torch.randn(n, dtype=torch.float64)
        if t in (0, 9, 49):
            closed = schedule.q_sample(x0, torch.full((n,), t), torch.randn(n, dtype=torch.float64))
            # mean and variance agree within ~5 standard errors of a sample mean / variance
            assert abs(x.mean() - closed.mean()) < 5 * math.sqrt(2 * x.var() / n)
            assert abs(x.var() / closed.var() - 1) < 5 * math.sqrt(2 * 2 / n)
            # and x_t - sqrt(alpha_bar) x_0 is independent of x_0 in both (correlation ~ 0)
            residual = x - schedule.alphas_cumprod[t].sqrt() * x0
            assert abs(torch.corrcoef(torch.stack([residual, x0]))[0, 1]) < 5 / math.sqrt(n)


@settings(max_examples=25, deadline=None)
@given(name=schedule_names, t=st.integers(min_value=1, max_value=T - 1), x0=st.floats(-3, 3), xt=st.floats(-3, 3))
def test_posterior_is_the_bayes_product(name, t, x0, xt):
    # q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0): a product of two Gaussians in x_{t-1},
    # N(x_t; sqrt(alpha_t) x_{t-1}, beta_t) N(x_{t-1}; sqrt(alpha_bar_{t-1}) x_0, 1 - alpha_bar_{t-1})
    schedule = SCHEDULES[name]
    alpha, beta = schedule.alphas[t].item(), schedule.betas[t].item()
    alpha_bar_prev = schedule.alphas_cumprod[t - 1].item()
    precision = alpha / beta + 1 / (1 - alpha_bar_prev)
    expected_var = 1 / precision
    expected_mean = expected_var * (
        math.sqrt(alpha) * xt / beta + math.sqrt(alpha_bar_prev) * x0 / (1 - alpha_bar_prev)
    )
    mean, var, log_var = schedule.q_posterior(
        torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[xt]], dtype=torch.float64), torch.tensor([t])
    )
    assert mean.item() == pytest.approx(expected_mean, rel=1e-9, abs=1e-12)
    assert var.item() == pytest.approx(expected_var, rel=1e-9)
    assert log_var.item() == pytest.approx(math.log(expected_var), rel=1e-9)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_posterior_at_t0_returns_x0_with_the_clipped_log_variance(name):
    schedule = SCHEDULES[name]
    x0, xt = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    mean, var, log_var = schedule.q_posterior(x0, xt, torch.zeros(3, dtype=torch.long))
    # x_{-1} is x_0 itself: the posterior is a point mass
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-12)
    assert (var == 0).all()
    # log(0) = -inf is replaced by log(beta_tilde_1), as in the DDPM code
    torch.testing.assert_close(log_var, schedule.posterior_variance[1].log().expand(3, 1))


@settings(max_examples=30, deadline=None)
@given(name=schedule_names, t=inner_t, seed=st.integers(0, 2**16))
def test_eps_x0_v_round_trips(name, t, seed):
    schedule = SCHEDULES[name]
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64)
    eps = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64)
    ts = torch.full((2,), t)
    xt = schedule.q_sample(x0, ts, eps)
    v = schedule.v_from_x0_eps(x0, eps, ts)
    close = {"rtol": 1e-9, "atol": 1e-9}
    torch.testing.assert_close(schedule.x0_from_eps(xt, ts, eps), x0, **close)
    torch.testing.assert_close(schedule.eps_from_x0(xt, ts, x0), eps, **close)
    torch.testing.assert_close(schedule.x0_from_v(xt, ts, v), x0, **close)
    torch.testing.assert_close(schedule.eps_from_v(xt, ts, v), eps, **close)
    torch.testing.assert_close(schedule.v_from_xt_eps(xt, ts, eps), v, **close)
    torch.testing.assert_close(schedule.v_from_xt_x0(xt, ts, x0), v, **close)
    for prediction_type, output in (("eps", eps), ("x0", x0), ("v", v)):
        torch.testing.assert_close(schedule.target(prediction_type, x0, eps, ts), output)
        x0_hat, eps_hat = schedule.x0_and_eps_from_model_output(prediction_type, output, xt, ts)
        torch.testing.assert_close(x0_hat, x0, **close)
        torch.testing.assert_close(eps_hat, eps, **close)


def test_v_at_zero_terminal_snr_is_minus_x0_and_x0_from_v_is_exact():
    # at alpha_bar = 0, x_t = eps and v = -x_0: v-prediction still determines x_0 (Lin et al. sec. 3.2)
    schedule = SCHEDULES["scaled_linear_zero_snr"]
    x0, eps = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    last = torch.full((4,), T - 1)
    xt = schedule.q_sample(x0, last, eps)
    torch.testing.assert_close(xt, eps, rtol=0, atol=0)
    torch.testing.assert_close(schedule.v_from_x0_eps(x0, eps, last), -x0, rtol=0, atol=0)
    torch.testing.assert_close(schedule.x0_from_v(xt, last, -x0), x0, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_snr_is_strictly_decreasing(name):
    snr = SCHEDULES[name].snr(torch.arange(T))
    assert (snr[1:] < snr[:-1]).all()
    assert snr.dtype == torch.float64


def test_zero_terminal_snr_rescale():
    for beta_schedule in ("linear", "scaled_linear", "cosine"):
        plain = NoiseSchedule(ScheduleConfig(beta_schedule=beta_schedule))
        rescaled = NoiseSchedule(ScheduleConfig(beta_schedule=beta_schedule, zero_terminal_snr=True))
        assert rescaled.alphas_cumprod[-1].item() == 0.0
        assert rescaled.snr(torch.tensor([T - 1])).item() == 0.0
        # the first step keeps its noise level (Lin et al. Algorithm 1)
        assert rescaled.alphas_cumprod[0].item() == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-12)
        assert rescaled.betas[-1].item() == 1.0


def test_known_values():
    # Lin et al. 2023, Table 1: terminal SNR of DDPM's linear schedule 4.036e-5 (sqrt(alpha_bar) = 0.006353)
    # and of Stable Diffusion's scaled_linear schedule 0.004682 (sqrt(alpha_bar) = 0.068265)
    last = torch.tensor([T - 1])
    assert SCHEDULES["linear"].snr(last).item() == pytest.approx(4.036e-05, rel=1e-3)
    assert SCHEDULES["scaled_linear"].snr(last).item() == pytest.approx(0.004682, rel=1e-3)
    assert SCHEDULES["scaled_linear"].alphas_cumprod[-1].sqrt().item() == pytest.approx(0.068265, rel=1e-4)

    # cosine: alpha_bar(t) = cos^2((t/T + s)/(1 + s) pi/2) / cos^2(s/(1 + s) pi/2) at t = T/2
    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    assert SCHEDULES["cosine"].alphas_cumprod[499].item() == pytest.approx(f(0.5) / f(0.0), rel=1e-12)


def test_q_sample_keeps_dtype_and_broadcasts_per_sample():
    schedule = SCHEDULES["linear"]
    x0 = torch.randn(3, 4, 5, 5)
    t = torch.tensor([0, 500, 999])
    xt = schedule.q_sample(x0, t, torch.zeros_like(x0))
    assert xt.dtype == torch.float32 and xt.shape == x0.shape
    for i in range(3):
        torch.testing.assert_close(xt[i], x0[i] * schedule.alphas_cumprod[t[i]].sqrt().float())


def test_bad_input_raises_value_errors_that_say_what_was_expected():
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        NoiseSchedule(ScheduleConfig(beta_schedule="quadratic"))
    with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\], got values from 0 to"):
        NoiseSchedule(ScheduleConfig(beta_start=0.0))
    schedule = SCHEDULES["linear"]
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 999\], got values from 0 to 1000"):
        schedule.q_sample(x, torch.tensor([0, 1000]), x)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 999\]"):
        schedule.snr(torch.tensor([-1]))
    with pytest.raises(ValueError, match="t must be an integer tensor"):
        schedule.q_sample(x, torch.tensor([0.5, 1.0]), x)
    with pytest.raises(ValueError, match="prediction_type must be 'eps', 'x0' or 'v', got 'noise'"):
        schedule.target("noise", x, x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="min_snr_gamma must be positive"):
        diffusion_loss(schedule, x, x, x, torch.tensor([0, 1]), min_snr_gamma=0.0)


def test_loss_without_weighting_is_the_mean_squared_error_to_the_target():
    schedule = SCHEDULES["cosine"]
    x0, eps, output = (torch.randn(4, 2, 2, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([1, 200, 600, 998])
    for prediction_type in ("eps", "x0", "v"):
        target = schedule.target(prediction_type, x0, eps, t)
        loss = diffusion_loss(schedule, output, x0, eps, t, prediction_type)
        torch.testing.assert_close(loss, torch.nn.functional.mse_loss(output, target))


@settings(max_examples=20, deadline=None)
@given(name=schedule_names, gamma=st.floats(0.5, 20.0), seed=st.integers(0, 2**16))
def test_min_snr_loss_is_the_same_for_every_target(name, gamma, seed):
    # Hang et al. eq. 8: each target's weight makes the loss min(SNR, gamma) ||x0 - x0_hat||^2,
    # so one prediction, written as eps, x0 or v, has one min-SNR loss
    schedule = SCHEDULES[name]
    generator = torch.Generator().manual_seed(seed)
    x0, eps, eps_hat = (torch.randn(6, 3, generator=generator, dtype=torch.float64) for _ in range(3))
    t = torch.randint(0, T - 1, (6,), generator=generator)
    xt = schedule.q_sample(x0, t, eps)
    x0_hat = schedule.x0_from_eps(xt, t, eps_hat)
    v_hat = schedule.v_from_xt_eps(xt, t, eps_hat)
    losses = [
        diffusion_loss(schedule, output, x0, eps, t, prediction_type, min_snr_gamma=gamma)
        for prediction_type, output in (("eps", eps_hat), ("x0", x0_hat), ("v", v_hat))
    ]
    expected = (torch.clamp(schedule.snr(t), max=gamma) * ((x0 - x0_hat) ** 2).mean(1)).mean()
    for loss in losses:
        torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-12)


def test_min_snr_weight_is_finite_at_zero_snr():
    snr = torch.tensor([0.0, 0.5, 5.0, 50.0], dtype=torch.float64)
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "eps"), torch.tensor([1.0, 1.0, 1.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "x0"), torch.tensor([0.0, 0.5, 5.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(
        min_snr_weight(snr, 5.0, "v"), torch.tensor([0.0, 0.5 / 1.5, 5 / 6, 5 / 51], dtype=torch.float64)
    )


def test_named_coefficients_are_their_equations():
    schedule = NoiseSchedule(ScheduleConfig(beta_schedule="cosine"))
    alpha_bar, alpha_bar_prev, betas = schedule.alphas_cumprod, schedule.alphas_cumprod_prev, schedule.betas
    torch.testing.assert_close(schedule.sqrt_alphas_cumprod**2, alpha_bar, rtol=0, atol=1e-15)
    torch.testing.assert_close(schedule.sqrt_one_minus_alphas_cumprod**2, 1 - alpha_bar, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        schedule.sqrt_recip_alphas_cumprod * schedule.sqrt_alphas_cumprod, torch.ones_like(alpha_bar)
    )
    # DDPM eq. 7: mu_tilde = coef1 x_0 + coef2 x_t; for x_0 = x_t = 1 it is coef1 + coef2
    t = torch.arange(1000)
    mean, variance, _ = schedule.q_posterior(
        torch.ones(1000, 1, dtype=torch.float64), torch.ones(1000, 1, dtype=torch.float64), t
    )
    torch.testing.assert_close(
        mean[:, 0], schedule.posterior_mean_coef1 + schedule.posterior_mean_coef2, rtol=0, atol=1e-15
    )
    torch.testing.assert_close(
        schedule.posterior_mean_coef1, alpha_bar_prev.sqrt() * betas / (1 - alpha_bar), rtol=0, atol=1e-15
    )
    torch.testing.assert_close(variance[:, 0], (1 - alpha_bar_prev) / (1 - alpha_bar) * betas, rtol=0, atol=1e-15)
