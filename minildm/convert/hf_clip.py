"""Load a transformers `CLIPTextModel` (Radford et al. 2021) into minildm's `TextEncoder`.

Stable Diffusion 1.x conditions on the text transformer of OpenAI's CLIP ViT-L/14, published as
`openai/clip-vit-large-patch14` in transformers' format. The two modules compute the same
function; only the names differ:

    transformers (text_model.)                      minildm TextEncoder
    embeddings.token_embedding.weight               token_embedding.weight
    embeddings.position_embedding.weight            position_embedding
    encoder.layers.{i}.layer_norm1.*                blocks.{i}.ln_1.*
    encoder.layers.{i}.self_attn.{q,k,v,out}_proj.* blocks.{i}.attn.{q,k,v,out}_proj.*
    encoder.layers.{i}.layer_norm2.*                blocks.{i}.ln_2.*
    encoder.layers.{i}.mlp.fc{1,2}.*                blocks.{i}.mlp.fc{1,2}.*
    final_layer_norm.*                              ln_final.*

`CLIPTextModelWithProjection` also holds `text_projection.weight` (text_embeds = pooled W_proj):
it becomes `text_projection.weight`, and `TextEncoder.project` applies it.

Pooling: transformers pools at argmax(ids) when `eos_token_id == 2` (the legacy value in SD 1.x's
config) and at the first `eos_token_id` otherwise; `config_from_hf` carries that choice over.

Usage with the real weights (a local safetensors file; minildm never downloads them):

    state = safetensors.torch.load_file("clip-vit-large-patch14/model.safetensors")
    encoder = TextEncoder(config_from_hf(hf_config))
    encoder.load_state_dict(convert_hf_clip_text_state_dict(state, encoder.config.num_layers))
"""

from types import SimpleNamespace

import torch

from minildm.text.text_encoder import TextEncoder, TextEncoderConfig

HF_LEGACY_EOS_TOKEN_ID = 2


def config_from_hf(hf_config, projection: bool = False) -> TextEncoderConfig:
    """The `TextEncoderConfig` of a transformers `CLIPTextConfig` (or of its config.json as a dict);
    projection=True keeps `CLIPTextModelWithProjection`'s text projection (projection_dim)."""
    if isinstance(hf_config, dict):
        hf_config = SimpleNamespace(**hf_config)
    if hf_config.hidden_act not in ("quick_gelu", "gelu"):
        raise ValueError(f"hidden_act must be 'quick_gelu' or 'gelu', got {hf_config.hidden_act!r}")
    eos = hf_config.eos_token_id
    return TextEncoderConfig(
        vocab_size=hf_config.vocab_size,
        context_length=hf_config.max_position_embeddings,
        width=hf_config.hidden_size,
        num_layers=hf_config.num_hidden_layers,
        num_heads=hf_config.num_attention_heads,
        mlp_width=hf_config.intermediate_size,
        activation=hf_config.hidden_act,
        eos_token_id=None if eos == HF_LEGACY_EOS_TOKEN_ID else eos,
        layer_norm_eps=hf_config.layer_norm_eps,
        projection_dim=hf_config.projection_dim if projection else None,
    )


def convert_hf_clip_text_state_dict(
    state_dict: dict[str, torch.Tensor], num_layers: int, projection: bool = False
) -> dict[str, torch.Tensor]:
    """Rename a `CLIPTextModel` state dict (with or without the `text_model.` prefix) to ours;
    projection=True also takes `text_projection.weight` (`CLIPTextModelWithProjection`, or CLIPModel).

    Keys of other parts of a full CLIP checkpoint (vision_model., logit_scale, visual_projection),
    the text projection unless asked for, and the `position_ids` buffer are left out.
    """
    prefix = "text_model." if any(k.startswith("text_model.") for k in state_dict) else ""
    renames = {
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "position_embedding",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    renames.update(encoder_layer_renames(num_layers))
    renames = {prefix + theirs: ours for theirs, ours in renames.items()}
    if projection:
        renames["text_projection.weight"] = "text_projection.weight"
    missing = [k for k in renames if k not in state_dict]
    if missing:
        raise ValueError(f"not a CLIPTextModel state dict with {num_layers} layers: missing {missing[:5]}")
    return {ours: state_dict[theirs] for theirs, ours in renames.items()}


def encoder_layer_renames(num_layers: int) -> dict[str, str]:
    """transformers' CLIPEncoder layer names -> minildm's blocks (the same for the text and vision towers)."""
    renames = {}
    for i in range(num_layers):
        ours, theirs = f"blocks.{i}.", f"encoder.layers.{i}."
        for param in ("weight", "bias"):
            renames[f"{theirs}layer_norm1.{param}"] = f"{ours}ln_1.{param}"
            renames[f"{theirs}layer_norm2.{param}"] = f"{ours}ln_2.{param}"
            renames[f"{theirs}mlp.fc1.{param}"] = f"{ours}mlp.fc1.{param}"
            renames[f"{theirs}mlp.fc2.{param}"] = f"{ours}mlp.fc2.{param}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                renames[f"{theirs}self_attn.{proj}.{param}"] = f"{ours}attn.{proj}.{param}"
    return renames


def text_encoder_from_hf(hf_model) -> TextEncoder:
    """A `TextEncoder` with the weights of a transformers `CLIPTextModel`, or of a
    `CLIPTextModelWithProjection` together with its text projection."""
    projection = getattr(hf_model, "text_projection", None) is not None
    encoder = TextEncoder(config_from_hf(hf_model.config, projection))
    state = convert_hf_clip_text_state_dict(hf_model.state_dict(), encoder.config.num_layers, projection)
    encoder.load_state_dict(state)
    return encoder
