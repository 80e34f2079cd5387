"""The perceptual autoencoder, LDM's first stage (sec. 3.1): images <-> latents f times smaller.

config.py          AutoencoderConfig (channels, levels -> f, latent channels c, codebook)
blocks.py          ResnetBlock, middle attention (Downsample / Upsample: nn/resample.py)
encoder_decoder.py Encoder E and Decoder D
distribution.py    DiagonalGaussian q(z|x): sample, mode, KL to N(0, I)
kl.py              AutoencoderKL
vq.py              VectorQuantizer and VQAutoencoder
perceptual.py      LPIPS, loaded only when its pretrained backbone is really there
discriminator.py   PatchGAN discriminator
losses.py          L1 + LPIPS + GAN with the adaptive weight; hinge and non-saturating
scale_factor.py    scale_factor = 1 / std(z), or per channel (z - mean) / std (latent_norm)
first_stage.py     FirstStage: the interface both implement (encode/decode scaled latents), build_autoencoder
saving.py          checkpoints: save_autoencoder, load_autoencoder
train.py           AutoencoderTrainConfig (and its short-run preset .fast_cpu), train_autoencoder
"""

from minildm.autoencoder.config import AutoencoderConfig
from minildm.autoencoder.distribution import DiagonalGaussian
from minildm.autoencoder.first_stage import FirstStage, build_autoencoder
from minildm.autoencoder.kl import AutoencoderKL
from minildm.autoencoder.perceptual import (
    LPIPSUnavailable,
    LPIPSUnavailableWarning,
    load_lpips,
    lpips_backbone_path,
)
from minildm.autoencoder.saving import load_autoencoder, save_autoencoder
from minildm.autoencoder.scale_factor import compute_scale_factor
from minildm.autoencoder.train import AutoencoderTrainConfig, train_autoencoder
from minildm.autoencoder.vq import VectorQuantizer, VQAutoencoder

__all__ = [
    "AutoencoderConfig",
    "AutoencoderKL",
    "AutoencoderTrainConfig",
    "DiagonalGaussian",
    "FirstStage",
    "LPIPSUnavailable",
    "LPIPSUnavailableWarning",
    "VQAutoencoder",
    "VectorQuantizer",
    "build_autoencoder",
    "compute_scale_factor",
    "load_autoencoder",
    "load_lpips",
    "lpips_backbone_path",
    "save_autoencoder",
    "train_autoencoder",
]
