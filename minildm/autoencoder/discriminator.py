"""The PatchGAN discriminator of the autoencoder loss (LDM sec. 3.1; pix2pix, Isola et al.
2017; VQGAN, Esser et al. 2021).

A fully convolutional net that does not say "real or fake" for the whole image but for each
overlapping patch: its output is a grid of logits (B, 1, h', w'), each seeing a receptive
field of 70x70 pixels for n_layers = 3 (34x34 for n_layers = 2). Judging local patches is
what makes the decoder produce sharp local texture instead of the blur an L1 loss alone
settles for.

    conv4x4/2 - LReLU - [conv4x4/2 - BN - LReLU] x (n_layers - 1) - conv4x4/1 - BN - LReLU - conv4x4/1
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DiscriminatorConfig:
    in_channels: int = 3
    channels: int = 64  # width of the first layer, doubled per layer up to 8x
    n_layers: int = 3


class PatchDiscriminator(nn.Module):
    """Images (B, 3, H, W) -> patch logits (B, 1, h', w')."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        ch = config.channels
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, config.n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < config.n_layers else 1  # the last hidden layer keeps the resolution
            layers += [
                nn.Conv2d(ch * previous, ch * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ch * mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(ch * mult, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02)."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
