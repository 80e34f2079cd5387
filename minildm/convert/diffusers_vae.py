"""Load a diffusers `AutoencoderKL` (and so Stable Diffusion's VAE) into minildm.AutoencoderKL.

The two share the architecture of LDM's first stage; only the module names differ
(diffusers -> minildm):

    down_blocks.i / up_blocks.i     -> levels.i       (up_blocks[0] is the lowest resolution in both)
    downsamplers.0 / upsamplers.0   -> resample
    conv_shortcut                   -> shortcut
    mid_block.resnets.0 / .1        -> middle.resnet_1 / resnet_2
    mid_block.attentions.0          -> middle.attention
        group_norm                  -> norm
        to_q / to_k / to_v / to_out.0 -> attention.q_proj / k_proj / v_proj / out_proj
    conv_norm_out                   -> norm_out

Config: block_out_channels = base_channels * channel_mult, layers_per_block = num_res_blocks,
norm_num_groups = norm_groups, mid_block_add_attention = attention_in_middle, and diffusers'
`scaling_factor` (0.18215 for SD 1.x) becomes the model's scale_factor.

    from safetensors.torch import load_file
    vae = load_diffusers_vae(json.load(open("vae/config.json")),
                             load_file("vae/diffusion_pytorch_model.safetensors"))
"""

import re

import torch

from minildm.autoencoder.config import AutoencoderConfig
from minildm.autoencoder.kl import AutoencoderKL

RENAMES = [
    (r"\.(down|up)_blocks\.(\d+)\.", r".levels.\2."),
    (r"\.(downsamplers|upsamplers)\.0\.", ".resample."),
    (r"\.conv_shortcut\.", ".shortcut."),
    (r"\.mid_block\.resnets\.0\.", ".middle.resnet_1."),
    (r"\.mid_block\.resnets\.1\.", ".middle.resnet_2."),
    (r"\.mid_block\.attentions\.0\.group_norm\.", ".middle.attention.norm."),
    (r"\.mid_block\.attentions\.0\.to_(q|k|v)\.", r".middle.attention.attention.\1_proj."),
    (r"\.mid_block\.attentions\.0\.to_out\.0\.", ".middle.attention.attention.out_proj."),
    (r"\.conv_norm_out\.", ".norm_out."),
]

# diffusers settings minildm implements only at these values.
FIXED_SETTINGS = {
    "act_fn": "silu",
    "shift_factor": None,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
}


def config_from_diffusers(config: dict) -> AutoencoderConfig:
    """The AutoencoderConfig equal to a diffusers AutoencoderKL config (dict or FrozenDict)."""
    for key, expected in FIXED_SETTINGS.items():
        if config.get(key, expected) != expected:
            raise ValueError(
                f"minildm's AutoencoderKL needs {key}={expected!r}, the diffusers config has {config[key]!r}"
            )
    for key, block in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
        if any(kind != block for kind in config[key]):
            raise ValueError(f"minildm's AutoencoderKL needs every {key} to be {block!r}, got {config[key]}")
    if config["out_channels"] != config["in_channels"]:
        raise ValueError(f"need out_channels == in_channels, got {config['out_channels']} and {config['in_channels']}")
    channels = list(config["block_out_channels"])
    base = channels[0]
    if any(ch % base for ch in channels):
        raise ValueError(f"block_out_channels must be multiples of the first, got {channels}")
    return AutoencoderConfig(
        in_channels=config["in_channels"],
        base_channels=base,
        channel_mult=tuple(ch // base for ch in channels),
        num_res_blocks=config["layers_per_block"],
        latent_channels=config["latent_channels"],
        attention_in_middle=config.get("mid_block_add_attention", True),
        norm_groups=config["norm_num_groups"],
    )


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename diffusers' keys to minildm's (values unchanged)."""
    converted = {}
    for name, tensor in state_dict.items():
        new_name = "." + name
        for pattern, replacement in RENAMES:
            new_name = re.sub(pattern, replacement, new_name)
        converted[new_name[1:]] = tensor
    return converted


def load_diffusers_vae(config: dict, state_dict: dict[str, torch.Tensor]) -> AutoencoderKL:
    """minildm.AutoencoderKL with a diffusers AutoencoderKL's weights and scaling factor, in eval mode.

    Every weight must find its place and every place must get a weight (strict loading).
    """
    model = AutoencoderKL(config_from_diffusers(config))
    weights = convert_state_dict(state_dict)
    weights["scale_factor"] = torch.tensor(float(config.get("scaling_factor", 0.18215)))
    model.load_state_dict(weights, strict=True)
    return model.eval()
