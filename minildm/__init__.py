"""minildm: Latent Diffusion Models (Rombach et al., CVPR 2022) from scratch, for reading and teaching.

The pipeline, in the paper's order: datasets -> autoencoder (sec. 3.1) -> diffusion (sec. 3.2)
-> U-Net with cross-attention (sec. 3.3) -> conditioning (text, classes, concatenation) ->
samplers and applications (sec. 4).
"""

from minildm.autoencoder import AutoencoderConfig, AutoencoderKL, VQAutoencoder
from minildm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minildm.config import Config, preset, resolve
from minildm.datasets import ShapesConfig, ShapesDataset
from minildm.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPlusPlus2MSampler,
    EulerAncestralSampler,
    EulerSampler,
    HeunSampler,
    NoiseSchedule,
    PLMSSampler,
    ScheduleConfig,
    classifier_free_guidance,
    diffusion_loss,
)
from minildm.ldm import LatentDiffusion, LDMConfig
from minildm.nn import UNet, UNetConfig
from minildm.nn.attention import MultiHeadAttention, attention
from minildm.pipelines import (
    image_to_image,
    inpaint,
    inpaint_training_free,
    make_sampler,
    super_resolve,
    text_to_image,
)
from minildm.text import CLIPTokenizer, TextEncoder, TextEncoderConfig

__all__ = [
    "Config",
    "DPMSolverPlusPlus2MSampler",
    "EulerAncestralSampler",
    "EulerSampler",
    "HeunSampler",
    "PLMSSampler",
    "preset",
    "resolve",
    "AutoencoderConfig",
    "AutoencoderKL",
    "CLIPTokenizer",
    "CheckpointError",
    "DDIMSampler",
    "DDPMSampler",
    "LDMConfig",
    "LatentDiffusion",
    "MultiHeadAttention",
    "NoiseSchedule",
    "ScheduleConfig",
    "ShapesConfig",
    "ShapesDataset",
    "TextEncoder",
    "TextEncoderConfig",
    "UNet",
    "UNetConfig",
    "VQAutoencoder",
    "attention",
    "classifier_free_guidance",
    "diffusion_loss",
    "image_to_image",
    "inpaint",
    "inpaint_training_free",
    "load_checkpoint",
    "make_sampler",
    "save_checkpoint",
    "super_resolve",
    "text_to_image",
]
