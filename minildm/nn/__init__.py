"""Hand-written neural network parts: attention, transformer blocks, the U-Net."""

from minildm.nn.unet import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig"]
