"""Load a diffusers `ControlNetModel` (Zhang et al. 2023; SD 1.x ControlNets) into minildm's ControlNet.

A ControlNetModel is the encoder and middle block of a `UNet2DConditionModel` (same names, so
diffusers_unet.py's renames apply) plus three parts that minildm names after the paper
(diffusers -> minildm):

    controlnet_cond_embedding.   -> hint_encoder.       E(c), the hint encoder
    controlnet_down_blocks.i     -> zero_convs.i        Z_i, one zero 1x1 conv per skip
    controlnet_mid_block         -> zero_conv_mid       Z_mid

The ControlNet must fit the U-Net it controls, so the loader takes that U-Net's config (which
also says how the input splits into x and x_concat) and checks the ControlNet's config against it.

    controlnet = load_diffusers_controlnet(json.load(open("controlnet/config.json")),
                                           load_file("controlnet/diffusion_pytorch_model.safetensors"), unet.config)
"""

import dataclasses

import torch

from minildm.convert.diffusers_unet import config_from_diffusers, convert_state_dict
from minildm.nn.controlnet import ControlNet, ControlNetConfig
from minildm.nn.unet import UNetConfig

CONTROLNET_RENAMES = [
    ("controlnet_cond_embedding.", "hint_encoder."),
    ("controlnet_down_blocks.", "zero_convs."),
    ("controlnet_mid_block.", "zero_conv_mid."),
]
# diffusers ControlNet settings minildm implements only at these values
FIXED_SETTINGS = {"controlnet_conditioning_channel_order": "rgb", "global_pool_conditions": False}
# UNetConfig fields that say how a model runs, not which weights it has
RUN_SETTINGS = ("use_sdpa", "gradient_checkpointing", "dropout")


def controlnet_config_from_diffusers(config: dict, unet_cfg: UNetConfig) -> ControlNetConfig:
    """The ControlNetConfig of a diffusers ControlNetModel config; ValueError if it cannot control `unet_cfg`."""
    for name, value in FIXED_SETTINGS.items():
        if config.get(name, value) != value:
            raise ValueError(f"minildm's ControlNet supports diffusers {name}={value!r} only, got {config[name]!r}")
    if config["in_channels"] != unet_cfg.in_channels + unet_cfg.extra_in_channels:
        raise ValueError(
            f"the ControlNet reads {config['in_channels']} input channels, the U-Net "
            f"{unet_cfg.in_channels} + {unet_cfg.extra_in_channels}"
        )
    levels = range(len(config["block_out_channels"]))
    attention = [i for i in levels if config["down_block_types"][i] == "CrossAttnDownBlock2D"]
    # read the encoder as a U-Net config, with the decoder mirrored and the controlled U-Net's output width
    as_unet = {
        **config,
        "out_channels": unet_cfg.out_channels,
        "up_block_types": ["CrossAttnUpBlock2D" if i in attention else "UpBlock2D" for i in levels][::-1],
    }
    derived = config_from_diffusers(as_unet)
    ignore = {name: getattr(unet_cfg, name) for name in RUN_SETTINGS}
    if dataclasses.replace(derived, **ignore) != unet_cfg:
        raise ValueError(f"the ControlNet's encoder {derived} differs from the U-Net's {unet_cfg}")
    return ControlNetConfig(
        hint_channels=config.get("conditioning_channels", 3),
        hint_widths=tuple(config.get("conditioning_embedding_out_channels", (16, 32, 96, 256))),
    )


def convert_controlnet_state_dict(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Rename a ControlNetModel state dict to minildm's ControlNet keys."""
    renamed = {}
    for key, value in state.items():
        for old, new in CONTROLNET_RENAMES:
            if key.startswith(old):
                key = new + key.removeprefix(old)
        renamed[key] = value
    return convert_state_dict(renamed, config)


def load_diffusers_controlnet(config: dict, state: dict[str, torch.Tensor], unet_cfg: UNetConfig) -> ControlNet:
    """A minildm ControlNet for a U-Net of config `unet_cfg`, holding a diffusers ControlNetModel's weights (strict)."""
    controlnet = ControlNet(unet_cfg, controlnet_config_from_diffusers(config, unet_cfg))
    controlnet.load_state_dict(convert_controlnet_state_dict(state, config), strict=True)
    return controlnet
