"""Encoder E and decoder D of the first stage (LDM sec. 3.1): x -> z = E(x), x~ = D(z).

    x (B, 3, H, W) --E--> z (B, c, H/f, W/f) --D--> x~ (B, 3, H, W)

The encoder goes down: conv_in, then per level `num_res_blocks` ResnetBlocks and a 2x
Downsample padded on the right and bottom as in LDM (not after the last level), a MiddleBlock,
GroupNorm + SiLU + conv_out. The decoder mirrors it, with one more ResnetBlock per level and
Upsample instead of Downsample. The layout and the parameter names follow LDM's
`ldm/modules/diffusionmodules/model.py`, so the diffusers converter
(minildm/convert/diffusers_vae.py) is a renaming of keys.
"""

import torch
import torch.nn.functional as F
from torch import nn

from minildm.autoencoder.blocks import MiddleBlock, ResnetBlock, group_norm
from minildm.autoencoder.config import AutoencoderConfig
from minildm.nn.resample import Downsample, Upsample


class AutoencoderLevel(nn.Module):
    """One resolution level of the encoder or decoder: ResnetBlocks (no time, no attention), then a resampler."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, norm_groups: int, resample: nn.Module):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, norm_groups) for i in range(num_blocks)
        )
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.resample(x)


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H/f, W/f).

    out_channels = 2c for KL (mean, log-variance), c for VQ.
    """

    def __init__(self, config: AutoencoderConfig, out_channels: int):
        super().__init__()
        channels = config.channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.levels = nn.ModuleList()
        previous = channels[0]
        for i, ch in enumerate(channels):
            is_last = i == len(channels) - 1
            resample = nn.Identity() if is_last else Downsample(ch, asymmetric_padding=True)
            self.levels.append(AutoencoderLevel(previous, ch, config.num_res_blocks, config.norm_groups, resample))
            previous = ch
        self.middle = MiddleBlock(channels[-1], config.norm_groups, config.attention_in_middle)
        self.norm_out = group_norm(channels[-1], config.norm_groups)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            h = level(h)
        h = self.middle(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, c, h, w) -> (B, in_channels, h*f, w*f)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        channels = config.channels
        self.conv_in = nn.Conv2d(config.latent_channels, channels[-1], 3, padding=1)
        self.middle = MiddleBlock(channels[-1], config.norm_groups, config.attention_in_middle)
        self.levels = nn.ModuleList()  # from the lowest resolution up
        previous = channels[-1]
        for i in reversed(range(len(channels))):
            resample = Upsample(channels[i]) if i > 0 else nn.Identity()
            self.levels.append(
                AutoencoderLevel(previous, channels[i], config.num_res_blocks + 1, config.norm_groups, resample)
            )
            previous = channels[i]
        self.norm_out = group_norm(channels[0], config.norm_groups)
        self.conv_out = nn.Conv2d(channels[0], config.in_channels, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight of the last conv: the adaptive GAN weight compares gradient norms here."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.middle(self.conv_in(z))
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))
