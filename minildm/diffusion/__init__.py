"""Diffusion (LDM sec. 3.2, DDPM, DDIM, Karras et al. 2022): noise schedules, the forward process,
the training loss, samplers (one per file; the ODE samplers in the sigma view of sigmas.py),
classifier-free guidance."""

from minildm.diffusion.ddim import DDIMSampler
from minildm.diffusion.ddpm import DDPMSampler
from minildm.diffusion.dpm_solver import DPMSolverPlusPlus2MSampler
from minildm.diffusion.euler import EulerSampler
from minildm.diffusion.euler_ancestral import EulerAncestralSampler
from minildm.diffusion.guidance import classifier_free_guidance, composed_guidance, rescale_guidance
from minildm.diffusion.heun import HeunSampler
from minildm.diffusion.loss import diffusion_loss, min_snr_weight
from minildm.diffusion.plms import PLMSSampler
from minildm.diffusion.sampler import Sampler
from minildm.diffusion.schedule import (
    NoiseSchedule,
    ScheduleConfig,
    rescale_zero_terminal_snr,
)
from minildm.diffusion.timesteps import inference_timesteps

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPlusPlus2MSampler",
    "EulerAncestralSampler",
    "EulerSampler",
    "HeunSampler",
    "NoiseSchedule",
    "PLMSSampler",
    "Sampler",
    "ScheduleConfig",
    "classifier_free_guidance",
    "composed_guidance",
    "rescale_guidance",
    "diffusion_loss",
    "inference_timesteps",
    "min_snr_weight",
    "rescale_zero_terminal_snr",
]
