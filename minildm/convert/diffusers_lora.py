"""LoRA adapter files in the format diffusers and peft read and write (Hu et al. 2022; nn/lora.py).

A Stable Diffusion LoRA file (`pytorch_lora_weights.safetensors`) holds only the adapter: for every
adapted layer of the U-Net, under diffusers' module names and peft's parameter names,

    unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight   (r, in)
    unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight   (out, r)

and, in the safetensors header under "lora_adapter_metadata", peft's LoraConfig as JSON (`r`,
`lora_alpha`, `target_modules`; prefixed "unet." in a pipeline's file). Without that metadata
diffusers takes lora_alpha = r (scale 1): `StableDiffusionPipeline.load_lora_weights` reads it, but
diffusers 0.42's `UNet2DConditionModel.load_lora_adapter` only with `use_safetensors=True`.
Module names, minildm -> diffusers:

    blocks.k -> transformer_blocks.k      q_proj / k_proj / v_proj -> to_q / to_k / to_v
    out_proj -> to_out.0

    save_lora(unet, "pytorch_lora_weights.safetensors")         # StableDiffusionPipeline.load_lora_weights reads it
    load_lora(unet, "pytorch_lora_weights.safetensors")         # a file from diffusers' save_lora_adapter or
                                                                # StableDiffusionPipeline.save_lora_weights
"""

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from minildm.convert.diffusers_unet import convert_state_dict
from minildm.nn.lora import add_lora_to, lora_layers

METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY
PREFIX = "unet."
TO_DIFFUSERS = [(".blocks.", ".transformer_blocks."), (".q_proj.", ".to_q."), (".k_proj.", ".to_k."),
                (".v_proj.", ".to_v."), (".out_proj.", ".to_out.0.")]  # fmt: skip
# peft LoraConfig options that change the update beyond (lora_alpha / r) B A
UNSUPPORTED = {"use_rslora": False, "use_dora": False, "lora_bias": False, "rank_pattern": {}, "alpha_pattern": {}}


def diffusers_name(name: str) -> str:
    """A minildm U-Net module path as diffusers names it."""
    name = f".{name}."
    for ours, theirs in TO_DIFFUSERS:
        name = name.replace(ours, theirs)
    return name[1:-1]


def save_lora(unet: torch.nn.Module, path: str | Path) -> Path:
    """Write only the U-Net's LoRA adapter as safetensors, in diffusers' pipeline format, with its rank and alpha."""
    layers = lora_layers(unet)
    if not layers:
        raise ValueError("this model has no LoRA layers: call minildm.nn.lora.add_lora first")
    settings = {(layer.rank, layer.alpha) for layer in layers.values()}
    if len(settings) != 1:
        raise ValueError(f"one rank and alpha for all layers can be saved, got (rank, alpha) {sorted(settings)}")
    ((rank, alpha),) = settings
    tensors = {}
    for name, layer in layers.items():
        target = PREFIX + diffusers_name(name)
        tensors[f"{target}.lora_A.weight"] = layer.lora_A.weight.detach().contiguous()
        tensors[f"{target}.lora_B.weight"] = layer.lora_B.weight.detach().contiguous()
    config = {"r": rank, "lora_alpha": alpha, "target_modules": sorted(diffusers_name(n) for n in layers)}
    metadata = {"format": "pt", METADATA_KEY: json.dumps({PREFIX + k: v for k, v in config.items()}, sort_keys=True)}
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The adapter's tensors and its LoraConfig settings (empty if the file has none), "unet." prefixes removed."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        header = f.metadata() or {}
    config = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else {}
    if any(key.startswith(PREFIX) for key in tensors):
        others = sorted({key.split(".")[0] for key in tensors if not key.startswith(PREFIX)})
        if others:
            raise ValueError(f"{path} also adapts {others}: minildm loads U-Net LoRA weights only")
        tensors = {key.removeprefix(PREFIX): value for key, value in tensors.items()}
        config = {key.removeprefix(PREFIX): value for key, value in config.items() if key.startswith(PREFIX)}
    return tensors, config


def load_lora(unet: torch.nn.Module, path: str | Path, alpha: float | None = None) -> list[str]:
    """Add the LoRA layers of a diffusers / peft adapter file to a minildm U-Net (freezing everything else).

    alpha: the file's lora_alpha if it has one, else this, else the rank (diffusers' default).
    Returns the adapted layers' minildm names.
    """
    tensors, config = read_lora_file(path)
    for key, value in UNSUPPORTED.items():
        if config.get(key, value) != value:
            raise ValueError(f"{path}: minildm's LoRA needs {key}={value!r}, the adapter has {config[key]!r}")
    suffixes = (".lora_A.weight", ".lora_B.weight")
    if not tensors or not all(key.endswith(suffixes) for key in tensors):
        odd = next((key for key in tensors if not key.endswith(suffixes)), None)
        raise ValueError(
            f"{path} is not a peft-format LoRA file ('<layer>.lora_A.weight' / '.lora_B.weight'), got {odd!r}"
        )
    renamed = convert_state_dict(tensors)  # diffusers module names -> minildm's
    layers = sorted({key.removesuffix(".lora_A.weight").removesuffix(".lora_B.weight") for key in renamed})
    if alpha is not None and "lora_alpha" in config and config["lora_alpha"] != alpha:
        raise ValueError(f"{path} says lora_alpha={config['lora_alpha']}, got alpha={alpha}")
    for parameter in unet.parameters():
        parameter.requires_grad_(False)
    for name in layers:
        rank = renamed[f"{name}.lora_A.weight"].shape[0]
        if "r" in config and config["r"] != rank:
            raise ValueError(f"{path} says r={config['r']}, but {name}'s lora_A has rank {rank}")
        layer_alpha = config.get("lora_alpha", alpha if alpha is not None else rank)
        add_lora_to(unet, name, rank, layer_alpha)
    missing, unexpected = unet.load_state_dict(renamed, strict=False)
    if unexpected or any(".lora_" in key for key in missing):
        raise ValueError(
            f"{path} does not fit this U-Net: unexpected {unexpected[:3]}, "
            f"missing {[k for k in missing if '.lora_' in k][:3]}"
        )
    return layers
