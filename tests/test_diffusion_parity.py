"""Parity of minildm's diffusion math with diffusers (an independent implementation, test-only).

Everything is compared in float64. diffusers builds its betas with `dtype=torch.float32`; to
compare the formulas rather than float32 rounding, `float64_diffusers` constructs its
schedulers while `torch.float32` points at float64, so diffusers' own code runs in float64.

Where minildm differs from diffusers on purpose (see ddim.py and ddpm.py docstrings):
  - DDIM, linspace spacing: diffusers steps from t to t - T // n, which is not the next point of
    its own linspace grid; minildm steps to the next grid point. The update formula itself is
    compared by giving diffusers an n with T // n equal to the gap of each step.
  - DDPM, a grid whose last timestep is above 0 (trailing): diffusers adds noise at that last
    step, minildm returns the posterior mean there (DDPM Algorithm 2, z = 0 at the end).
"""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from minildm.diffusion import DDIMSampler, DDPMSampler, NoiseSchedule, ScheduleConfig

TOLERANCE = {"rtol": 0, "atol": 1e-10}
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
CONFIGS = {
    "linear": (ScheduleConfig(beta_schedule="linear"), {"beta_schedule": "linear"}),
    "scaled_linear": (ScheduleConfig(**SD), SD),
    "cosine": (ScheduleConfig(beta_schedule="cosine"), {"beta_schedule": "squaredcos_cap_v2"}),
    "linear_zero_snr": (
        ScheduleConfig(beta_schedule="linear", zero_terminal_snr=True),
        {"beta_schedule": "linear", "rescale_betas_zero_snr": True},
    ),
    "scaled_linear_zero_snr": (ScheduleConfig(**SD, zero_terminal_snr=True), {**SD, "rescale_betas_zero_snr": True}),
    "cosine_zero_snr": (
        ScheduleConfig(beta_schedule="cosine", zero_terminal_snr=True),
        {"beta_schedule": "squaredcos_cap_v2", "rescale_betas_zero_snr": True},
    ),
}


def float64_diffusers(scheduler_class, **config):
    """A diffusers scheduler whose betas and alphas_cumprod are computed by diffusers in float64."""
    float32 = torch.float32
    torch.float32 = torch.float64
    try:
        scheduler = scheduler_class(**config)
    finally:
        torch.float32 = float32
    assert scheduler.alphas_cumprod.dtype == torch.float64
    return scheduler


def seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_betas_and_alphas_cumprod_match_diffusers(name):
    config, diffusers_config = CONFIGS[name]
    ours = NoiseSchedule(config)
    theirs = float64_diffusers(DDPMScheduler, **diffusers_config)
    torch.testing.assert_close(ours.betas, theirs.betas, **TOLERANCE)
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod, **TOLERANCE)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_q_sample_and_v_match_add_noise_and_get_velocity(name):
    config, diffusers_config = CONFIGS[name]
    ours = NoiseSchedule(config)
    theirs = float64_diffusers(DDPMScheduler, **diffusers_config)
    x0, noise = torch.randn(16, 3, 8, 8, dtype=torch.float64), torch.randn(16, 3, 8, 8, dtype=torch.float64)
    t = torch.cat([torch.tensor([0, 999]), torch.randint(0, 1000, (14,))])
    torch.testing.assert_close(ours.q_sample(x0, t, noise), theirs.add_noise(x0, noise, t), **TOLERANCE)
    torch.testing.assert_close(ours.v_from_x0_eps(x0, noise, t), theirs.get_velocity(x0, noise, t), **TOLERANCE)


@pytest.mark.parametrize("num_steps", [1, 3, 7, 10, 50, 999, 1000])
@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0), ("linspace", 0)])
def test_timesteps_match_set_timesteps(num_steps, spacing, offset):
    schedule = NoiseSchedule(ScheduleConfig())
    if offset == 1 and num_steps == 1000:
        # diffusers returns 1000, ..., 1: timestep 1000 does not exist, minildm says so
        theirs = DDIMScheduler(steps_offset=1)
        theirs.set_timesteps(1000)
        assert theirs.timesteps[0] == 1000
        with pytest.raises(ValueError, match=r"steps_offset=1 moves the timesteps outside \[0, 999\]"):
            DDIMSampler(schedule, num_steps, timestep_spacing=spacing, steps_offset=offset)
        return
    for sampler, scheduler in (
        (DDIMSampler(schedule, num_steps, timestep_spacing=spacing, steps_offset=offset), DDIMScheduler),
        (
            DDPMSampler(schedule, num_inference_steps=num_steps, timestep_spacing=spacing, steps_offset=offset),
            DDPMScheduler,
        ),
    ):
        theirs = scheduler(timestep_spacing=spacing, steps_offset=offset)
        theirs.set_timesteps(num_steps)
        assert torch.equal(sampler.timesteps, theirs.timesteps)


def step_inputs(t):
    """model_output, x_t of shape (2, 4, 3, 3) that differ at each t."""
    generator = seeded(10_000 + int(t))
    return torch.randn(2, 4, 3, 3, generator=generator, dtype=torch.float64), torch.randn(
        2, 4, 3, 3, generator=generator, dtype=torch.float64
    )


# 1000 steps visit every timestep, the same grid for all three spacings: run it once
GRIDS = [(spacing, n) for n in (10, 50) for spacing in ("leading", "trailing", "linspace")] + [("leading", 1000)]


def steps_to_check(timesteps):
    """(index, t) of the steps to compare: all of them for short grids; for 1000 steps (each
    compared step is independent of the others) the first and last three and every 7th, to save time."""
    n = len(timesteps)
    return [(i, t) for i, t in enumerate(timesteps) if n <= 50 or i < 3 or i >= n - 3 or i % 7 == 0]


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing,num_steps", GRIDS)
def test_ddim_step_matches_diffusers(spacing, num_steps, prediction_type, eta):
    config, diffusers_config = CONFIGS["scaled_linear"]
    ours = DDIMSampler(
        NoiseSchedule(config), num_steps, eta=eta, prediction_type=prediction_type, timestep_spacing=spacing
    )
    theirs = float64_diffusers(
        DDIMScheduler,
        **diffusers_config,
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        timestep_spacing=spacing,
        clip_sample=False,
    )
    theirs.set_timesteps(num_steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    timesteps = ours.timesteps.tolist()
    for i, t in steps_to_check(timesteps):
        if spacing == "linspace" and i + 1 < len(timesteps):
            # diffusers steps to t - 1000 // n: choose its n so that this is our next grid point
            gap = t - timesteps[i + 1]
            theirs.num_inference_steps = 1000 // gap
            assert 1000 // theirs.num_inference_steps == gap
        model_output, x_t = step_inputs(t)
        expected = theirs.step(model_output, t, x_t, eta=eta, generator=seeded(t)).prev_sample
        torch.testing.assert_close(ours.step(model_output, t, x_t, seeded(t)), expected, **TOLERANCE)


def test_diffusers_ddim_linspace_steps_off_its_own_grid():
    # the reason for the adjustment above: from 999, diffusers' 10-step linspace DDIM lands on the
    # noise level of t = 899, while its next step is taken at t = 888
    theirs = float64_diffusers(
        DDIMScheduler, **CONFIGS["scaled_linear"][1], timestep_spacing="linspace", clip_sample=False
    )
    theirs.set_timesteps(10)
    assert theirs.timesteps[:2].tolist() == [999, 888]
    x0, eps = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    schedule = NoiseSchedule(CONFIGS["scaled_linear"][0])
    x_t = schedule.q_sample(x0, torch.tensor([999, 999]), eps)
    stepped = theirs.step(eps, 999, x_t).prev_sample
    torch.testing.assert_close(stepped, schedule.q_sample(x0, torch.tensor([899, 899]), eps), **TOLERANCE)
    ours = DDIMSampler(schedule, 10, timestep_spacing="linspace").step(eps, 999, x_t)
    torch.testing.assert_close(ours, schedule.q_sample(x0, torch.tensor([888, 888]), eps), **TOLERANCE)


@pytest.mark.parametrize("final_alpha_bar_is_one", [True, False])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_stable_diffusion_settings_match_diffusers(eta, final_alpha_bar_is_one):
    # Stable Diffusion: leading spacing with steps_offset = 1, set_alpha_to_one = False
    config, diffusers_config = CONFIGS["scaled_linear"]
    ours = DDIMSampler(
        NoiseSchedule(config), 50, eta=eta, steps_offset=1, final_alpha_bar_is_one=final_alpha_bar_is_one
    )
    theirs = float64_diffusers(
        DDIMScheduler, **diffusers_config, steps_offset=1, set_alpha_to_one=final_alpha_bar_is_one, clip_sample=False
    )
    theirs.set_timesteps(50)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist() == list(range(981, 0, -20))
    for t in ours.timesteps.tolist():
        model_output, x_t = step_inputs(t)
        expected = theirs.step(model_output, t, x_t, eta=eta, generator=seeded(t)).prev_sample
        torch.testing.assert_close(ours.step(model_output, t, x_t, seeded(t)), expected, **TOLERANCE)


@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddim_zero_snr_v_prediction_chain_matches_diffusers(clip_sample):
    # Lin et al.'s recipe: zero terminal SNR, v-prediction, trailing timesteps; one generator for the
    # whole chain, so the two draw the same noise in the same order
    config, diffusers_config = CONFIGS["scaled_linear_zero_snr"]
    schedule = NoiseSchedule(config)
    ours = DDIMSampler(schedule, 25, eta=0.8, prediction_type="v", timestep_spacing="trailing", clip_sample=clip_sample)
    theirs = float64_diffusers(
        DDIMScheduler,
        **diffusers_config,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        clip_sample=clip_sample,
    )
    theirs.set_timesteps(25)
    x_ours = x_theirs = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    generator_ours, generator_theirs = seeded(1), seeded(1)

    def model(x, t):
        # a stand-in network: any fixed function of (x_t, t)
        return torch.tanh(x) * (1 + t / 1000)

    for t in ours.timesteps.tolist():
        x_ours = ours.step(model(x_ours, t), t, x_ours, generator_ours)
        x_theirs = theirs.step(model(x_theirs, t), t, x_theirs, eta=0.8, generator=generator_theirs).prev_sample
    torch.testing.assert_close(x_ours, x_theirs, **TOLERANCE)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing,num_steps", GRIDS + [("full_chain", None)])
def test_ddpm_step_matches_diffusers(spacing, num_steps, prediction_type, variance_type):
    config, diffusers_config = CONFIGS["linear"]
    theirs = float64_diffusers(
        DDPMScheduler,
        **diffusers_config,
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        variance_type=variance_type,
        clip_sample=False,
        timestep_spacing="leading" if num_steps is None else spacing,
    )
    if num_steps is None:
        ours = DDPMSampler(NoiseSchedule(config), None, prediction_type, variance_type=variance_type)
    else:
        ours = DDPMSampler(NoiseSchedule(config), num_steps, prediction_type, spacing, variance_type=variance_type)
        theirs.set_timesteps(num_steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    timesteps = ours.timesteps.tolist()
    for i, t in steps_to_check(timesteps):
        model_output, x_t = step_inputs(t)
        expected = theirs.step(model_output, t, x_t, generator=seeded(t)).prev_sample
        if i == len(timesteps) - 1 and t > 0:
            # diffusers adds noise at a last step above t = 0; minildm returns the mean
            their_noise = torch.randn(x_t.shape, generator=seeded(t), dtype=torch.float64)
            expected = expected - theirs._get_variance(t) ** 0.5 * their_noise
        torch.testing.assert_close(ours.step(model_output, t, x_t, seeded(t)), expected, **TOLERANCE)


def test_ddpm_clip_sample_matches_diffusers():
    config, diffusers_config = CONFIGS["cosine"]
    ours = DDPMSampler(NoiseSchedule(config), None, "eps", clip_sample=True)
    theirs = float64_diffusers(DDPMScheduler, **diffusers_config, clip_sample=True)
    for t in (999, 500, 10, 0):
        model_output, x_t = step_inputs(t)
        expected = theirs.step(model_output, t, x_t, generator=seeded(t)).prev_sample
        torch.testing.assert_close(ours.step(model_output, t, x_t, seeded(t)), expected, **TOLERANCE)
