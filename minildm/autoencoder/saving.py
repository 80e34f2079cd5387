"""Autoencoder checkpoints: {"config": asdict(cfg), "kind": "kl" | "vq", "state_dict", "scale_factor"},
written atomically and read with weights_only=True (minildm/checkpoint.py). A training
run adds a "training" entry (step, optimizer and discriminator states, history) for resume.
"""

import os
from dataclasses import asdict

from torch import nn

from minildm.autoencoder.config import AutoencoderConfig
from minildm.autoencoder.kl import AutoencoderKL
from minildm.autoencoder.vq import VQAutoencoder
from minildm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def build_autoencoder(kind: str, cfg: AutoencoderConfig) -> AutoencoderKL | VQAutoencoder:
    """AutoencoderKL for kind 'kl', VQAutoencoder for 'vq'."""
    if kind == "kl":
        return AutoencoderKL(cfg)
    if kind == "vq":
        return VQAutoencoder(cfg)
    raise ValueError(f"autoencoder kind must be 'kl' or 'vq', got {kind!r}")


def autoencoder_checkpoint(model: AutoencoderKL | VQAutoencoder) -> dict:
    """The model's part of a checkpoint (plain containers and tensors only)."""
    return {
        "config": asdict(model.config),
        "kind": model.kind,
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "scale_factor": float(model.scale_factor),
    }


def save_autoencoder(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Atomically write the model (and `extra` entries, e.g. training state) to `path`."""
    save_checkpoint({**autoencoder_checkpoint(model), **(extra or {})}, path)


def autoencoder_from_checkpoint(checkpoint: dict) -> AutoencoderKL | VQAutoencoder:
    """Rebuild the model from a loaded checkpoint dict, in eval mode."""
    model = build_autoencoder(checkpoint["kind"], AutoencoderConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    if abs(float(model.scale_factor) - checkpoint["scale_factor"]) > 1e-6 * abs(checkpoint["scale_factor"]):
        raise CheckpointError(
            f"checkpoint scale_factor {checkpoint['scale_factor']} disagrees with its state_dict's {float(model.scale_factor)}"
        )
    return model.eval()


def load_autoencoder(path: str | os.PathLike) -> AutoencoderKL | VQAutoencoder:
    """Load an autoencoder saved by `save_autoencoder` or `train_autoencoder`, in eval mode."""
    checkpoint = load_checkpoint(path, required_keys=("config", "kind", "state_dict", "scale_factor"))
    return autoencoder_from_checkpoint(checkpoint)
