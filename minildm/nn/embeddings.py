"""Sinusoidal timestep embedding and its MLP (DDPM, Ho et al. 2020, sec. 3.3 / App. B;
Transformer positional encoding, Vaswani et al. 2017, sec. 3.5).

The U-Net is told the diffusion step t through a vector. With half = dim / 2 frequencies

    omega_i = 10000^(-i / half),   i = 0 .. half-1
    emb(t)  = [cos(t omega_0), ..., cos(t omega_{half-1}), sin(t omega_0), ..., sin(t omega_{half-1})]

(cos first, as Stable Diffusion: diffusers' `flip_sin_to_cos=True, freq_shift=0`). An MLP
(linear, SiLU, linear) turns it into the time embedding that every ResBlock receives.
t may be fractional (a float tensor); integer steps are converted to float. The sinusoids are
computed in float32 and then cast to the MLP's dtype (as diffusers does), so a U-Net held in
float64, float16 or bfloat16 runs without autocast.
"""

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t: (B,) steps, int or float -> (B, dim) float32 embedding [cos(t omega), sin(t omega)]."""
    if t.ndim != 1:
        raise ValueError(f"timesteps must have shape (B,), got {tuple(t.shape)}")
    if dim % 2 != 0:
        raise ValueError(f"timestep embedding width must be even, got {dim}")
    half = dim // 2
    # omega_i = max_period^(-i / half)
    omega = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * omega[None, :]  # (B, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (B, dim)


class TimestepEmbedding(nn.Module):
    """emb = W_2 SiLU(W_1 timestep_embedding(t) + b_1) + b_2, from `freq_dim` to `embed_dim`."""

    def __init__(self, freq_dim: int, embed_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.linear_1 = nn.Linear(freq_dim, embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) -> (B, embed_dim), in the dtype of the MLP's weights."""
        sinusoids = timestep_embedding(t, self.freq_dim).to(self.linear_1.weight.dtype)  # (B, freq_dim)
        return self.linear_2(self.act(self.linear_1(sinusoids)))
