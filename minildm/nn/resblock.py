"""Residual block with the timestep embedding (DDPM's U-Net, Ho et al. 2020, App. B;
scale-shift variant: Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", sec. 3, "AdaGN").

    h = Conv3x3(SiLU(GroupNorm(x)))
    default:      h = GroupNorm(h + W_t SiLU(emb))
    scale-shift:  [s, b] = W_t SiLU(emb);  h = GroupNorm(h) (1 + s) + b
    h = Conv3x3(Dropout(SiLU(h)))
    out = skip(x) + h          skip = identity, or a 1x1 conv when the channel count changes

The embedding emb (B, time_dim) carries the timestep (and the class label, which is added to it).
"""

import torch
from torch import nn


class ResBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_dim: int,
        norm_groups: int = 32,
        dropout: float = 0.0,
        scale_shift: bool = False,
    ):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(norm_groups, in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        # scale-shift needs two numbers per channel (s and b), the default one
        self.time_emb_proj = nn.Linear(time_dim, 2 * out_channels if scale_shift else out_channels)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.act = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W), emb: (B, time_dim) -> (B, out_channels, H, W)."""
        h = self.conv1(self.act(self.norm1(x)))
        t = self.time_emb_proj(self.act(emb))[:, :, None, None]  # (B, C or 2C, 1, 1)
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)
            # h = GroupNorm(h) (1 + s) + b
            h = self.norm2(h) * (1 + scale) + shift
        else:
            # h = GroupNorm(h + W_t SiLU(emb))
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(self.act(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h
