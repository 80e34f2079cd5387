"""Hand-written neural network parts: attention, transformer blocks, the U-Net, and adapters on it
(LoRA, ControlNet)."""

from minildm.nn.controlnet import ControlNet, ControlNetConfig
from minildm.nn.lora import LoRALinear, add_lora, merge_lora, unmerge_lora
from minildm.nn.unet import UNet, UNetConfig

__all__ = [
    "ControlNet",
    "ControlNetConfig",
    "LoRALinear",
    "UNet",
    "UNetConfig",
    "add_lora",
    "merge_lora",
    "unmerge_lora",
]
