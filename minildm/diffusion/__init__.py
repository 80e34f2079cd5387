"""Diffusion (LDM sec. 3.2, DDPM, DDIM): noise schedules, the forward process, the training
loss, samplers (one per file) and classifier-free guidance."""

from minildm.diffusion.ddim import DDIMSampler
from minildm.diffusion.ddpm import DDPMSampler
from minildm.diffusion.guidance import classifier_free_guidance
from minildm.diffusion.loss import diffusion_loss, min_snr_weight
from minildm.diffusion.schedule import (
    NoiseSchedule,
    ScheduleConfig,
    rescale_zero_terminal_snr,
)
from minildm.diffusion.timesteps import inference_timesteps

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "NoiseSchedule",
    "ScheduleConfig",
    "classifier_free_guidance",
    "diffusion_loss",
    "inference_timesteps",
    "min_snr_weight",
    "rescale_zero_terminal_snr",
]
