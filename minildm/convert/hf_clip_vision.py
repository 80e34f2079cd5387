"""Load a transformers `CLIPVisionModel(WithProjection)` (Radford et al. 2021) into minildm's `VisionEncoder`.

The two modules compute the same function (CLIP's ViT, see minildm/clip/vision.py); only names differ:

    transformers (vision_model.)                    minildm VisionEncoder
    embeddings.patch_embedding.weight               patch_embedding.weight
    embeddings.class_embedding                      class_embedding
    embeddings.position_embedding.weight            position_embedding
    pre_layrnorm.*                                  ln_pre.*
    encoder.layers.{i}.layer_norm1.*                blocks.{i}.ln_1.*
    encoder.layers.{i}.self_attn.{q,k,v,out}_proj.* blocks.{i}.attn.{q,k,v,out}_proj.*
    encoder.layers.{i}.layer_norm2.*                blocks.{i}.ln_2.*
    encoder.layers.{i}.mlp.fc{1,2}.*                blocks.{i}.mlp.fc{1,2}.*
    post_layernorm.*                                ln_post.*
    visual_projection.weight                        visual_projection.weight

A whole transformers `CLIPModel` (both towers, both projections and `logit_scale`) becomes a
minildm `CLIP` through `clip_from_hf`, so CLIP score can be computed with real weights when a
local copy exists (minildm never downloads them):

    hf_model = transformers.CLIPModel.from_pretrained("path/to/clip-vit-base-patch32")  # a local folder
    clip = clip_from_hf(hf_model)
"""

from types import SimpleNamespace

import torch

from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.vision import VisionEncoder, VisionEncoderConfig
from minildm.convert.hf_clip import config_from_hf, convert_hf_clip_text_state_dict, encoder_layer_renames


def vision_config_from_hf(hf_config, projection_dim: int | None = None) -> VisionEncoderConfig:
    """The `VisionEncoderConfig` of a transformers `CLIPVisionConfig` (or its config.json as a dict);
    projection_dim: the width of the visual projection to keep, None for none."""
    if isinstance(hf_config, dict):
        hf_config = SimpleNamespace(**hf_config)
    if hf_config.hidden_act not in ("quick_gelu", "gelu"):
        raise ValueError(f"hidden_act must be 'quick_gelu' or 'gelu', got {hf_config.hidden_act!r}")
    return VisionEncoderConfig(
        image_size=hf_config.image_size,
        patch_size=hf_config.patch_size,
        in_channels=hf_config.num_channels,
        width=hf_config.hidden_size,
        num_layers=hf_config.num_hidden_layers,
        num_heads=hf_config.num_attention_heads,
        mlp_width=hf_config.intermediate_size,
        activation=hf_config.hidden_act,
        layer_norm_eps=hf_config.layer_norm_eps,
        projection_dim=projection_dim,
    )


def convert_hf_clip_vision_state_dict(
    state_dict: dict[str, torch.Tensor], num_layers: int, projection: bool = False
) -> dict[str, torch.Tensor]:
    """Rename a `CLIPVisionModel` state dict (with or without the `vision_model.` prefix) to ours;
    projection=True also takes `visual_projection.weight` (`CLIPVisionModelWithProjection`, or CLIPModel).

    Keys of the text half of a full CLIP checkpoint, logit_scale and the `position_ids` buffer are left out.
    """
    prefix = "vision_model." if any(k.startswith("vision_model.") for k in state_dict) else ""
    renames = {
        "embeddings.patch_embedding.weight": "patch_embedding.weight",
        "embeddings.class_embedding": "class_embedding",
        "embeddings.position_embedding.weight": "position_embedding",
    }
    for param in ("weight", "bias"):
        renames[f"pre_layrnorm.{param}"] = f"ln_pre.{param}"
        renames[f"post_layernorm.{param}"] = f"ln_post.{param}"
    renames.update(encoder_layer_renames(num_layers))
    renames = {prefix + theirs: ours for theirs, ours in renames.items()}
    if projection:
        renames["visual_projection.weight"] = "visual_projection.weight"
    missing = [k for k in renames if k not in state_dict]
    if missing:
        raise ValueError(f"not a CLIPVisionModel state dict with {num_layers} layers: missing {missing[:5]}")
    return {ours: state_dict[theirs] for theirs, ours in renames.items()}


def vision_encoder_from_hf(hf_model) -> VisionEncoder:
    """A `VisionEncoder` with the weights of a transformers `CLIPVisionModel`, or of a
    `CLIPVisionModelWithProjection` together with its visual projection."""
    projection = getattr(hf_model, "visual_projection", None)
    projection_dim = None if projection is None else projection.out_features
    encoder = VisionEncoder(vision_config_from_hf(hf_model.config, projection_dim))
    state = convert_hf_clip_vision_state_dict(hf_model.state_dict(), encoder.config.num_layers, projection is not None)
    encoder.load_state_dict(state)
    return encoder


def clip_from_hf(hf_model) -> CLIP:
    """A minildm `CLIP` with the weights of a transformers `CLIPModel`: both towers, their
    projections, and the log temperature `logit_scale`."""
    config = CLIPConfig(
        embed_dim=hf_model.config.projection_dim,
        vision=vision_config_from_hf(hf_model.config.vision_config),
        text=config_from_hf(hf_model.config.text_config),
    )
    clip = CLIP(config)
    state = hf_model.state_dict()
    vision = convert_hf_clip_vision_state_dict(state, config.vision.num_layers, projection=True)
    text = convert_hf_clip_text_state_dict(state, config.text.num_layers, projection=True)
    clip.load_state_dict(
        {
            **{f"vision.{name}": value for name, value in vision.items()},
            **{f"text.{name}": value for name, value in text.items()},
            "logit_scale": state["logit_scale"],
        }
    )
    return clip
