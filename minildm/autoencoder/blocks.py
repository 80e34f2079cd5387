"""The building blocks of the first-stage autoencoder (LDM sec. 3.1, App. G).

The encoder and decoder of LDM (and of Stable Diffusion's VAE) are stacks of three pieces:

- `ResnetBlock`: h = x + conv(SiLU(GN(conv(SiLU(GN(x)))))), with a 1x1 conv on the skip
  path when the channel count changes (He et al. 2016, pre-activation form).
- `Downsample(asymmetric_padding=True)` / `Upsample` from minildm/nn/resample.py: halve the
  resolution with a stride-2 3x3 conv (padded on the right and bottom only, as in LDM, unlike
  the U-Net's), double it with nearest-neighbour upsampling + a 3x3 conv.
- `MiddleBlock`: ResnetBlock -> `AttentionBlock` -> ResnetBlock at the lowest resolution,
  where single-head self-attention over all H*W positions lets every latent see the whole
  image.

GroupNorm uses eps = 1e-6, as in LDM and diffusers, so that converted weights give the same
numbers (minildm/convert/diffusers_vae.py).
"""

import torch
import torch.nn.functional as F
from torch import nn

from minildm.nn.attention import MultiHeadAttention


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm(groups, channels, eps=1e-6); `channels` must be a multiple of `groups`."""
    if channels % groups != 0:
        raise ValueError(f"channels ({channels}) must be a multiple of norm_groups ({groups})")
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """x -> x' = shortcut(x) + conv2(SiLU(GN(conv1(SiLU(GN(x)))))), shapes (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # a 1x1 conv matches the channel count on the skip path only where it changes
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class AttentionBlock(nn.Module):
    """x + Attention(GN(x)) over the H*W positions, one head, q/k/v with biases (SD's VAE attention)."""

    def __init__(self, channels: int, norm_groups: int):
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.attention = MultiHeadAttention(channels, num_heads=1, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        tokens = self.norm(x).view(B, C, H * W).transpose(1, 2)  # (B, H*W, C)
        attended = self.attention(tokens)  # (B, H*W, C)
        return x + attended.transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)


class MiddleBlock(nn.Module):
    """ResnetBlock -> AttentionBlock (optional) -> ResnetBlock, at the lowest resolution."""

    def __init__(self, channels: int, norm_groups: int, use_attention: bool):
        super().__init__()
        self.resnet_1 = ResnetBlock(channels, channels, norm_groups)
        self.attention = AttentionBlock(channels, norm_groups) if use_attention else nn.Identity()
        self.resnet_2 = ResnetBlock(channels, channels, norm_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet_2(self.attention(self.resnet_1(x)))
