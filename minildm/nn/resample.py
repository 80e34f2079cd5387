"""Down- and up-sampling between resolution levels, shared by the U-Net and the autoencoder
(Ronneberger et al. 2015; the layers used by DDPM and LDM).

Downsample: a 3x3 convolution with stride 2: (B, C, H, W) -> (B, C, H/2, W/2). The two networks
pad differently, and converted weights only give the same numbers with the right padding:

- the U-Net pads one pixel on every side (`padding=1`, diffusers' `downsample_padding=1`);
- the autoencoder (LDM's first stage, Stable Diffusion's VAE) pads one pixel on the right and
  bottom only, then convolves unpadded: `asymmetric_padding=True`.

Upsample:   nearest-neighbour x2, then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W), the
same in both networks.
A learned strided convolution rather than pooling, and nearest + conv rather than a transposed
convolution (which makes checkerboard artefacts, Odena et al. 2016).
"""

import torch
import torch.nn.functional as F
from torch import nn


class Downsample(nn.Module):
    """(B, C, H, W) -> (B, C, H/2, W/2); asymmetric_padding: pad right and bottom only (the autoencoder)."""

    def __init__(self, channels: int, asymmetric_padding: bool = False):
        super().__init__()
        self.asymmetric_padding = asymmetric_padding
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0 if asymmetric_padding else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.asymmetric_padding:
            # (left, right, top, bottom) = (0, 1, 0, 1), as in LDM and SD's VAE
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """(B, C, H, W) -> (B, C, 2H, 2W): nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x)
