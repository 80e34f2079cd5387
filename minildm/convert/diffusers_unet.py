"""Load a diffusers `UNet2DConditionModel` (and so the Stable Diffusion 1.x U-Net) into minildm.UNet.

minildm.UNet uses diffusers' module names wherever they say what a thing is, so the weight
key mapping is a short list of renames (diffusers -> minildm):

    transformer_blocks.k      -> blocks.k              (TransformerBlocks in a SpatialTransformer)
    attnN.to_q / to_k / to_v  -> attnN.q_proj / k_proj / v_proj
    attnN.to_out.0            -> attnN.out_proj
    ff.net.0.proj             -> ff.geglu.proj          (GEGLU: [a, g] = h W + b)
    ff.net.2                  -> ff.out
    downsamplers.0 / upsamplers.0 -> resample

and one reshape: Stable Diffusion 1.x stores the SpatialTransformer's proj_in / proj_out as 1x1
convolutions (C_out, C_in, 1, 1); minildm uses the same map as a Linear (C_out, C_in).
Everything else (conv_in, time_embedding, class_embedding, resnets, norms, conv_out) has the
same name and shape in both.

Config: diffusers' in_channels = out_channels + extra input channels (inpainting's mask and
masked latent); a config with out_channels > in_channels (a learned variance) is refused.
diffusers' `attention_head_dim` is, for these U-Nets, the number of heads (an old
naming accident, kept by diffusers for compatibility); the head width is channels // heads.
diffusers' class table has `num_class_embeds` rows; minildm's has num_classes + 1 (the last is
the null label), so num_class_embeds = num_classes + 1. minildm's pooled text vector
(emb = MLP(t) + W p, `pooled_dim`) is diffusers' class_embed_type="simple_projection" (an
nn.Linear named class_embedding, called with class_labels=p); its weights are renamed to
pooled_embedding. A minildm U-Net without a context maps to a diffusers one whose
cross_attention_dim equals each level's width, called with encoder_hidden_states=None: both then
attend to the image tokens in the second attention.

    from safetensors.torch import load_file            # or torch.load(..., weights_only=True)
    unet = load_diffusers_unet(json.load(open("unet/config.json")),
                               load_file("unet/diffusion_pytorch_model.safetensors"))
"""

import torch

from minildm.nn.unet import UNet, UNetConfig

RENAMES = [
    (".transformer_blocks.", ".blocks."),
    (".to_q.", ".q_proj."),
    (".to_k.", ".k_proj."),
    (".to_v.", ".v_proj."),
    (".to_out.0.", ".out_proj."),
    (".ff.net.0.proj.", ".ff.geglu.proj."),
    (".ff.net.2.", ".ff.out."),
    (".downsamplers.0.", ".resample."),
    (".upsamplers.0.", ".resample."),
]

# diffusers settings minildm implements only at these values (their diffusers defaults).
FIXED_SETTINGS = {
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "only_cross_attention": False,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_eps": 1e-5,
    "encoder_hid_dim": None,
    "num_attention_heads": None,
    "dual_cross_attention": False,
    "addition_embed_type": None,
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "time_cond_proj_dim": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "attention_type": "default",
    "class_embeddings_concat": False,
    "cross_attention_norm": None,
}


def convert_state_dict(diffusers_state: dict[str, torch.Tensor], config: dict | None = None) -> dict[str, torch.Tensor]:
    """Rename diffusers' keys to minildm's and turn 1x1-conv projections into Linear weights.
    Pass the diffusers config when it may use class_embed_type="simple_projection" (pooled text)."""
    pooled = config is not None and config.get("class_embed_type") == "simple_projection"
    converted = {}
    for key, value in diffusers_state.items():
        new_key = key
        if pooled and key.startswith("class_embedding."):
            new_key = "pooled_embedding." + key.removeprefix("class_embedding.")
        for old, new in RENAMES:
            new_key = new_key.replace(old, new)
        if (".proj_in." in new_key or ".proj_out." in new_key) and value.ndim == 4:
            value = value[:, :, 0, 0]  # (C_out, C_in, 1, 1) -> (C_out, C_in)
        converted[new_key] = value
    return converted


def config_from_diffusers(config: dict) -> UNetConfig:
    """A minildm UNetConfig equal to a diffusers UNet2DConditionModel config (its config.json)."""
    for name, value in FIXED_SETTINGS.items():
        if config.get(name, value) != value:
            raise ValueError(f"minildm.UNet supports diffusers {name}={value!r} only, got {config[name]!r}")
    class_embed_type = config.get("class_embed_type")
    if class_embed_type not in (None, "simple_projection"):
        raise ValueError(
            f"minildm.UNet supports class_embed_type None or 'simple_projection', got {class_embed_type!r}"
        )
    channels = list(config["block_out_channels"])
    base = channels[0]
    if any(c % base for c in channels):
        raise ValueError(f"block_out_channels must be multiples of the first, got {channels}")
    down_types = list(config["down_block_types"])
    attention_levels = tuple(i for i, kind in enumerate(down_types) if kind == "CrossAttnDownBlock2D")
    up_types = ["CrossAttnUpBlock2D" if i in attention_levels else "UpBlock2D" for i in range(len(channels))][::-1]
    if (
        any(kind not in ("DownBlock2D", "CrossAttnDownBlock2D") for kind in down_types)
        or list(config["up_block_types"]) != up_types
    ):
        raise ValueError(
            f"need DownBlock2D/CrossAttnDownBlock2D blocks mirrored by up_block_types {up_types}, "
            f"got {down_types} and {list(config['up_block_types'])}"
        )
    for name in ("layers_per_block", "transformer_layers_per_block"):
        if not isinstance(config.get(name, 1), int):
            raise TypeError(f"minildm.UNet needs one {name} for all levels, got {config[name]}")

    # attention_head_dim is the number of heads: one count for all levels, or one constant width
    heads = config.get("attention_head_dim", 8)
    heads = [heads] * len(channels) if isinstance(heads, int) else list(heads)
    widths = {c // h for c, h in zip(channels, heads)}
    if len(set(heads)) == 1:
        num_heads, head_dim = heads[0], None
    elif len(widths) == 1:
        num_heads, head_dim = 8, widths.pop()
    else:
        raise ValueError(
            f"attention_head_dim must be one head count or give one head width, got {heads} for {channels}"
        )

    cross = config.get("cross_attention_dim", 1280)
    if isinstance(cross, int):
        context_dim = cross
    elif list(cross) == channels:
        context_dim = None  # self-attention in the second attention: no context
    else:
        raise ValueError(f"cross_attention_dim must be one int, or the block widths {channels}, got {cross}")

    num_class_embeds = config.get("num_class_embeds")
    in_channels, out_channels = config["in_channels"], config["out_channels"]
    if out_channels > in_channels:
        # the extra outputs would be a learned variance (Nichol & Dhariwal 2021), which no minildm sampler reads
        raise ValueError(
            f"minildm.UNet predicts eps, x0 or v only: need out_channels <= in_channels, "
            f"got in_channels={in_channels}, out_channels={out_channels} (a learned variance?)"
        )
    return UNetConfig(
        in_channels=out_channels,
        out_channels=out_channels,
        extra_in_channels=in_channels - out_channels,
        base_channels=base,
        channel_mult=tuple(c // base for c in channels),
        num_res_blocks=config.get("layers_per_block", 2),
        attention_levels=attention_levels,
        num_heads=num_heads,
        head_dim=head_dim,
        context_dim=context_dim,
        num_classes=None if num_class_embeds is None else num_class_embeds - 1,
        pooled_dim=config["projection_class_embeddings_input_dim"] if class_embed_type == "simple_projection" else None,
        dropout=config.get("dropout", 0.0),
        resblock_scale_shift=config.get("resnet_time_scale_shift", "default") == "scale_shift",
        norm_groups=config.get("norm_num_groups", 32),
        transformer_depth=config.get("transformer_layers_per_block", 1),
    )


def diffusers_config(cfg: UNetConfig) -> dict:
    """The diffusers UNet2DConditionModel config equal to a minildm UNetConfig (for parity and benchmarks).

    The input x and x_concat become one diffusers input of in_channels + extra_in_channels.
    """
    if cfg.coordinate_channels:
        raise ValueError("diffusers' UNet2DConditionModel has no coordinate channels: use coordinate_channels=False")
    if cfg.pooled_dim is not None and cfg.num_classes is not None:
        raise ValueError("diffusers has one class_embedding: a U-Net with both num_classes and pooled_dim has no equal")
    channels = cfg.level_channels
    levels = range(len(channels))
    return {
        "in_channels": cfg.in_channels + cfg.extra_in_channels,
        "out_channels": cfg.out_channels,
        "down_block_types": tuple(
            "CrossAttnDownBlock2D" if i in cfg.attention_levels else "DownBlock2D" for i in levels
        ),
        "up_block_types": tuple("CrossAttnUpBlock2D" if i in cfg.attention_levels else "UpBlock2D" for i in levels)[
            ::-1
        ],
        "block_out_channels": tuple(channels),
        "layers_per_block": cfg.num_res_blocks,
        "dropout": cfg.dropout,
        "norm_num_groups": cfg.norm_groups,
        "cross_attention_dim": cfg.context_dim if cfg.context_dim is not None else tuple(channels),
        "transformer_layers_per_block": cfg.transformer_depth,
        "attention_head_dim": tuple(cfg.heads(c)[0] for c in channels),
        "num_class_embeds": None if cfg.num_classes is None else cfg.num_classes + 1,
        "class_embed_type": None if cfg.pooled_dim is None else "simple_projection",
        "projection_class_embeddings_input_dim": cfg.pooled_dim,
        "resnet_time_scale_shift": "scale_shift" if cfg.resblock_scale_shift else "default",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def load_diffusers_unet(config: dict, diffusers_state: dict[str, torch.Tensor]) -> UNet:
    """A minildm.UNet built from a diffusers config and holding its weights (strict: every key must match)."""
    unet = UNet(config_from_diffusers(config))
    unet.load_state_dict(convert_state_dict(diffusers_state, config), strict=True)
    return unet
