"""Hand-written neural network parts: attention, transformer blocks, the U-Net, and adapters on it
(LoRA, ControlNet, IP-Adapter)."""

from minildm.nn.controlnet import ControlNet, ControlNetConfig
from minildm.nn.ip_adapter import DecoupledCrossAttention, ImageProjection, add_ip_adapter, set_ip_adapter_scale
from minildm.nn.lora import LoRALinear, add_lora, merge_lora, unmerge_lora
from minildm.nn.unet import UNet, UNetConfig

__all__ = [
    "ControlNet",
    "ControlNetConfig",
    "DecoupledCrossAttention",
    "ImageProjection",
    "LoRALinear",
    "UNet",
    "UNetConfig",
    "add_ip_adapter",
    "add_lora",
    "merge_lora",
    "set_ip_adapter_scale",
    "unmerge_lora",
]
