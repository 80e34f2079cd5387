"""Autoencoder checkpoints: {"kind", "config": asdict(config) (with its kind, "kl" or "vq"), "state_dict",
"scale_factor" (a float, or one per channel with latent_norm="channel")},
written atomically and read with weights_only=True (minildm/checkpoint.py). A training
run adds a "training" entry (step, optimizer and discriminator states, history) for resume.
"""

import os
from dataclasses import asdict

import torch

from minildm.autoencoder.config import AutoencoderConfig
from minildm.autoencoder.first_stage import FirstStage, build_autoencoder
from minildm.checkpoint import CheckpointError, error_summary, load_checkpoint, save_checkpoint


def autoencoder_checkpoint(model: FirstStage) -> dict:
    """The model's part of a checkpoint (plain containers and tensors only)."""
    return {
        "config": asdict(model.config),
        "kind": "minildm.Autoencoder",
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "scale_factor": model.scale_factor.tolist(),  # a float, or one per channel (latent_norm="channel")
    }


def save_autoencoder(model: FirstStage, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Atomically write the model (and `extra` entries, e.g. training state) to `path`."""
    save_checkpoint({**autoencoder_checkpoint(model), **(extra or {})}, path)


def autoencoder_from_checkpoint(checkpoint: dict) -> FirstStage:
    """Rebuild the model from a loaded checkpoint dict, in eval mode."""
    config = dict(checkpoint["config"])
    if checkpoint["kind"] in ("kl", "vq") and "kind" not in config:
        config["kind"] = checkpoint["kind"]  # written before the config carried its kind
    elif checkpoint["kind"] != "minildm.Autoencoder":
        raise CheckpointError(
            f"this checkpoint holds a {checkpoint['kind']!r}, expected an autoencoder (train-autoencoder)"
        )
    try:
        model = build_autoencoder(AutoencoderConfig(**config))
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"this autoencoder checkpoint does not match this version of minildm: {error_summary(err)}"
        ) from err
    try:
        stored = torch.tensor(checkpoint["scale_factor"], dtype=model.scale_factor.dtype)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint scale_factor is not a number or a list of numbers: {error_summary(err)}"
        ) from err
    if stored.shape != model.scale_factor.shape or not torch.allclose(stored, model.scale_factor, rtol=1e-6, atol=0):
        raise CheckpointError(
            f"checkpoint scale_factor {checkpoint['scale_factor']} disagrees with its state_dict's "
            f"{model.scale_factor.tolist()}"
        )
    return model.eval()


def load_autoencoder(path: str | os.PathLike) -> FirstStage:
    """Load an autoencoder saved by `save_autoencoder` or `train_autoencoder`, in eval mode."""
    checkpoint = load_checkpoint(path, required_keys=("config", "kind", "state_dict", "scale_factor"))
    return autoencoder_from_checkpoint(checkpoint)
