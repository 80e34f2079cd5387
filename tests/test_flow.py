"""Flow matching / rectified flow (minildm/diffusion/flow.py)."""

import math

import pytest
import torch

from minildm.diffusion import DDIMSampler, NoiseSchedule, ScheduleConfig
from minildm.diffusion.flow import (
    TIME_SCALE,
    FlowEulerSampler,
    flow_euler_step,
    flow_interpolate,
    flow_matching_loss,
    flow_time_of_sigma,
    flow_training_times,
    flow_velocity_target,
    logit_normal_times,
    shift_times,
    timesteps_of_flow_times,
    velocity_from_model_output,
)
from minildm.diffusion.sigmas import schedule_sigmas
from minildm.ldm import LDMConfig

SD = NoiseSchedule(ScheduleConfig(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012))


def network(x_t, t):
    """A stand-in diffusion network: a fixed smooth function of (x_t, t)."""
    return torch.tanh(x_t) * (1 + t / 1000) + 0.1 * math.sin(t / 100)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_a_diffusion_model_read_as_a_velocity_samples_what_ddim_samples(prediction_type, spacing):
    ddim = DDIMSampler(SD, 10, prediction_type, spacing)
    z = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_t = z
    for t in ddim.timesteps:
        x_t = ddim.step(network(x_t, int(t)), t, x_t)

    # the same grid as flow times t = sigma / (1 + sigma), ending at t = 0 (the data)
    sigmas = schedule_sigmas(SD)[ddim.timesteps].tolist()
    times = [flow_time_of_sigma(sigma) for sigma in sigmas] + [0.0]
    alpha_bar = SD.alphas_cumprod[ddim.timesteps[0]].item()
    # the flow point x = x_vp / (sqrt(alpha_bar) + sqrt(1 - alpha_bar))
    x = z / (alpha_bar**0.5 + (1 - alpha_bar) ** 0.5)
    for i, t in enumerate(ddim.timesteps.tolist()):
        alpha_bar = SD.alphas_cumprod[t].item()
        x_vp = (alpha_bar**0.5 + (1 - alpha_bar) ** 0.5) * x
        velocity = velocity_from_model_output(prediction_type, network(x_vp, t), x_vp, alpha_bar)
        x = flow_euler_step(x, velocity, times[i], times[i + 1])
    torch.testing.assert_close(x, x_t, rtol=0, atol=1e-6)


def test_the_path_its_velocity_and_the_loss():
    x0, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    x_t = flow_interpolate(x0, eps, t)
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[3], eps[3])
    # the velocity is the time derivative of the path
    dt = 1e-6
    derivative = (flow_interpolate(x0, eps, t + dt) - flow_interpolate(x0, eps, t - dt)) / (2 * dt)
    torch.testing.assert_close(derivative, flow_velocity_target(x0, eps), rtol=0, atol=1e-8)
    target = eps - x0
    assert flow_matching_loss(target, x0, eps).item() == 0.0
    assert flow_matching_loss(target + 1, x0, eps).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"model_output must have the target's shape \(4, 3\)"):
        flow_matching_loss(target[:2], x0, eps)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_straight_paths_are_solved_exactly_by_euler(shift):
    # for a data set of one point x0 the ideal velocity is (x_t - x0) / t, a straight line to x0
    x0 = torch.randn(2, 5, dtype=torch.float64)
    sampler = FlowEulerSampler(4, shift=shift)
    assert sampler.timesteps[0] == TIME_SCALE and len(sampler.timesteps) == 4
    x = torch.randn(2, 5, dtype=torch.float64)
    for t in sampler.timesteps:
        x = sampler.step((x - x0) / (t / TIME_SCALE), t, x)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-12)
    assert sampler.previous_timestep(sampler.timesteps[-1]) == -1


def test_logit_normal_times_and_the_shift():
    t = logit_normal_times(20000, torch.Generator().manual_seed(0), mean=0.5, std=0.8)
    assert 0 < t.min() and t.max() < 1
    logits = torch.log(t / (1 - t))
    assert abs(logits.mean().item() - 0.5) < 0.03 and abs(logits.std().item() - 0.8) < 0.03
    assert shift_times(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)
    assert shift_times(torch.tensor([0.0, 1.0]), 3.0).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="shift must be positive"):
        shift_times(torch.tensor(0.5), 0.0)


def test_uniform_training_times_reach_the_noise_end_that_logit_normal_rarely_trains():
    generator = torch.Generator().manual_seed(0)
    uniform = flow_training_times("uniform", 20000, generator)
    logit_normal = flow_training_times("logit_normal", 20000, generator)
    assert 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean().item() - 0.5) < 0.01
    # P(t > 0.9): 0.1 under U(0, 1); under sigmoid(N(0, 1)) it is P(n > log 9) = 1 - Phi(2.197) = 0.014
    assert abs((uniform > 0.9).float().mean().item() - 0.1) < 0.01
    assert abs((logit_normal > 0.9).float().mean().item() - 0.014) < 0.004
    # mixed: half of each, so P(t > 0.9) = (0.1 + 0.014) / 2
    mixed = flow_training_times("mixed", 20000, generator)
    assert 0 < mixed.min() and mixed.max() < 1 and abs((mixed > 0.9).float().mean().item() - 0.057) < 0.006
    with pytest.raises(ValueError, match="flow training times must be one of"):
        flow_training_times("cosine", 4)
    with pytest.raises(ValueError, match="flow_times must be one of"):
        LDMConfig(flow_times="beta")


def test_logit_normal_location_moves_training_towards_the_noise_end():
    # SD3's m: n ~ N(1, 1) gives P(t > 0.9) = P(n > log 9) = 1 - Phi(1.197) = 0.116, more than
    # uniform's 0.1, and P(t < 0.1) = Phi(-3.197) = 0.0007
    shifted = flow_training_times("logit_normal", 20000, torch.Generator().manual_seed(0), mean=1.0)
    assert abs((shifted > 0.9).float().mean().item() - 0.116) < 0.008
    assert (shifted < 0.1).float().mean().item() < 0.002
    # the same normal draws, moved by m before the sigmoid
    centred = flow_training_times("logit_normal", 20000, torch.Generator().manual_seed(0))
    moved = torch.sigmoid(torch.logit(centred.double()) + 1.0).float()
    torch.testing.assert_close(shifted, moved, rtol=0, atol=1e-6)  # float32 rounding of sigmoid
    with pytest.raises(ValueError, match="flow_time_mean must be in"):
        LDMConfig(flow_time_mean=9.0)


def test_noise_end_share_trains_the_band_sampling_starts_from():
    generator = torch.Generator().manual_seed(0)
    plain = flow_training_times("logit_normal", 20000, torch.Generator().manual_seed(0))
    # noise_end_from = 1: exactly t = 1, the one time the sampler's first step reads
    times = flow_training_times(
        "logit_normal", 20000, torch.Generator().manual_seed(0), noise_end=0.1, noise_end_from=1.0
    )
    at_end = times == 1.0
    assert abs(at_end.float().mean().item() - 0.1) < 0.006 and (plain < 1).all()
    # the other times are the plain draws, untouched (the same generator, drawn first)
    torch.testing.assert_close(times[~at_end], plain[~at_end], rtol=0, atol=0)
    # a band [0.9, 1): 0.1 of the draws uniform there, on top of logit-normal's own 1.4% above 0.9
    times = flow_training_times("logit_normal", 20000, torch.Generator().manual_seed(0), noise_end=0.1)
    moved = times != plain
    assert abs(moved.float().mean().item() - 0.1) < 0.006
    assert 0.9 <= times[moved].min() and times[moved].max() < 1 and abs(times[moved].mean().item() - 0.95) < 0.003
    # at t = 1 the path point is the noise itself and the velocity target eps - x0
    x0, eps = torch.randn(2, 4, generator=generator), torch.randn(2, 4, generator=generator)
    torch.testing.assert_close(flow_interpolate(x0, eps, torch.ones(2)), eps, rtol=0, atol=0)
    with pytest.raises(ValueError, match="noise_end must be a share"):
        flow_training_times("uniform", 4, noise_end=1.0)
    with pytest.raises(ValueError, match="flow_noise_end must be a share"):
        LDMConfig(flow_noise_end=0.1, flow_noise_end_from=1.5)


def test_timesteps_of_flow_times_round_to_the_nearest_timestep_in_flow_time():
    schedule = NoiseSchedule(ScheduleConfig(zero_terminal_snr=True))
    sigmas = schedule_sigmas(schedule)
    own = torch.tensor([flow_time_of_sigma(s) for s in sigmas.tolist()], dtype=torch.float64)
    # every timestep's own flow time maps back to it; t = 1 (pure noise) to the zero-SNR last step
    assert torch.equal(timesteps_of_flow_times(own, schedule.alphas_cumprod), torch.arange(len(own)))
    assert own[-1] == 1.0 and timesteps_of_flow_times(torch.ones(1), schedule.alphas_cumprod).item() == len(own) - 1
    # any t: the argmin of |t - flow time of k| (brute force)
    t = torch.rand(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    brute = (t[:, None] - own[None, :]).abs().argmin(dim=1)
    assert torch.equal(timesteps_of_flow_times(t, schedule.alphas_cumprod), brute)
    # the uniform discrete timesteps of this schedule train t > 0.9 a third of the time (logit-normal:
    # 1.4%) and t < 0.4 a fifth of it (logit-normal: Phi(logit 0.4) = 34%), as docs/EXPERIMENTS.md says
    assert abs((own > 0.9).double().mean().item() - 0.349) < 0.002
    assert abs((own < 0.4).double().mean().item() - 0.186) < 0.002
