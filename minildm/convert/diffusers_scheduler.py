"""Read a diffusers scheduler config (scheduler/scheduler_config.json) into minildm's noise schedule
and DDIM settings (DDPM, Ho et al. 2020, eq. 4; DDIM, Song et al. 2021, eq. 12).

A diffusers scheduler config holds two things that minildm keeps apart:

- the training noise schedule, beta_1..beta_T -> `ScheduleConfig` (NoiseSchedule):
      num_train_timesteps -> num_timesteps     beta_schedule "squaredcos_cap_v2" -> "cosine"
      beta_start, beta_end, rescale_betas_zero_snr -> zero_terminal_snr
- how a sampler walks it -> `SamplerSettings`, the keyword arguments of `DDIMSampler`:
      prediction_type "epsilon" / "sample" / "v_prediction" -> "eps" / "x0" / "v"
      timestep_spacing, steps_offset, clip_sample, set_alpha_to_one -> final_alpha_bar_is_one

Keys a config leaves out take DDIMScheduler's defaults, as `DDIMScheduler.from_config` does
(SD 1.x ships a PNDMScheduler config: `steps_offset=1`, `set_alpha_to_one=False`, no clipping).

    schedule, settings = schedule_from_diffusers(json.load(open("scheduler/scheduler_config.json")))
    sampler = DDIMSampler(NoiseSchedule(schedule), 50, **asdict(settings))
"""

from dataclasses import dataclass

from minildm.diffusion.schedule import ScheduleConfig

BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
# DDIMScheduler's defaults (diffusers 0.42), used for keys a config leaves out
DDIM_DEFAULTS = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "epsilon",
    "thresholding": False,
    "timestep_spacing": "leading",
    "rescale_betas_zero_snr": False,
}


@dataclass
class SamplerSettings:
    """The keyword arguments of `DDIMSampler` that a diffusers scheduler config fixes."""

    prediction_type: str = "eps"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    clip_sample: bool = False
    final_alpha_bar_is_one: bool = True


def schedule_from_diffusers(config: dict) -> tuple[ScheduleConfig, SamplerSettings]:
    """The noise schedule and DDIM settings of a diffusers scheduler config (dict)."""
    get = {**DDIM_DEFAULTS, **config}.get
    if get("trained_betas") is not None:
        raise ValueError("trained_betas (an explicit list of betas) is not supported: give beta_schedule instead")
    if get("thresholding"):
        raise ValueError("thresholding=True (dynamic thresholding, Imagen) is not supported: need thresholding=False")
    if get("clip_sample") and get("clip_sample_range") != 1.0:
        raise ValueError(f"minildm clips x0 to [-1, 1]: need clip_sample_range=1.0, got {get('clip_sample_range')}")
    if get("beta_schedule") not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {get('beta_schedule')!r}")
    if get("prediction_type") not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {sorted(PREDICTION_TYPES)}, got {get('prediction_type')!r}")
    schedule = ScheduleConfig(
        num_timesteps=get("num_train_timesteps"),
        beta_schedule=BETA_SCHEDULES[get("beta_schedule")],
        beta_start=get("beta_start"),
        beta_end=get("beta_end"),
        zero_terminal_snr=get("rescale_betas_zero_snr"),
    )
    settings = SamplerSettings(
        prediction_type=PREDICTION_TYPES[get("prediction_type")],
        timestep_spacing=get("timestep_spacing"),
        steps_offset=get("steps_offset"),
        clip_sample=get("clip_sample"),
        final_alpha_bar_is_one=get("set_alpha_to_one"),
    )
    return schedule, settings
