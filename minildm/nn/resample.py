"""Down- and up-sampling between the U-Net's resolution levels (Ronneberger et al. 2015;
the layers used by DDPM and LDM).

Downsample: a 3x3 convolution with stride 2 (padding 1): (B, C, H, W) -> (B, C, H/2, W/2).
Upsample:   nearest-neighbour x2, then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W).
A learned strided convolution rather than pooling, and nearest + conv rather than a transposed
convolution (which makes checkerboard artefacts, Odena et al. 2016).
"""

import torch
import torch.nn.functional as F
from torch import nn


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x)
