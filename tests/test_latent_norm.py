"""Per-channel latent standardisation (latent_norm="channel", EDM2) against the global scale factor.

Identities: after compute_scale_factor the sampled latents have mean 0 and std 1 in every
channel; decode_latents undoes encode_latents; "global" is LDM's one number, unchanged.
Independent check: the shift and scale equal numpy's per-channel mean and std of the same draws.
Files: a per-channel autoencoder survives save/load, a checkpoint
whose stored factor disagrees with its weights is refused, and a bad setting is a one-line error.
"""

import dataclasses

import numpy as np
import pytest
import torch

from minildm.autoencoder import AutoencoderConfig, AutoencoderKL, VQAutoencoder, compute_scale_factor
from minildm.autoencoder.saving import (
    autoencoder_checkpoint,
    autoencoder_from_checkpoint,
    load_autoencoder,
    save_autoencoder,
)
from minildm.autoencoder.scale_factor import from_diffusion, sampled_latents, to_diffusion
from minildm.checkpoint import CheckpointError
from minildm.config import ConfigError, preset, resolve

TINY = AutoencoderConfig(
    base_channels=8, channel_mult=(1, 2), num_res_blocks=1, latent_channels=3, norm_groups=4, codebook_size=16
)


def model_for(model_class, latent_norm: str):
    torch.manual_seed(0)
    return model_class(dataclasses.replace(TINY, kind=model_class.kind, latent_norm=latent_norm)).eval()


def images(n: int = 16, size: int = 16) -> torch.Tensor:
    torch.manual_seed(1)
    # channels with different offsets and spreads, so the latent channels differ
    x = torch.rand(n, 3, size, size) * torch.tensor([2.0, 0.5, 1.0]).view(1, 3, 1, 1)
    return (x - torch.tensor([1.0, 0.0, 0.8]).view(1, 3, 1, 1)).clamp(-1, 1)


@pytest.mark.parametrize("model_class", [AutoencoderKL, VQAutoencoder])
def test_each_channel_is_standardised(model_class):
    model, x = model_for(model_class, "channel"), images()
    compute_scale_factor(model, x, seed=3)
    assert model.scale_factor.shape == model.latent_shift.shape == (3,)
    z = sampled_latents(model, x, seed=3)  # the same draws compute_scale_factor used
    standardised = (z - model.latent_shift.view(1, -1, 1, 1)) * model.scale_factor.view(1, -1, 1, 1)
    torch.testing.assert_close(standardised.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(standardised.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)
    # the channels really differed: one number could not have standardised them all
    assert z.std(dim=(0, 2, 3)).max() / z.std(dim=(0, 2, 3)).min() > 1.05
    # and the model applies exactly that map: (z - shift) * scale on its deterministic latents
    with torch.no_grad():
        encoded = model.encode(x)
        raw = encoded if isinstance(encoded, torch.Tensor) else encoded.mode()
        expected = (raw - model.latent_shift.view(1, -1, 1, 1)) * model.scale_factor.view(1, -1, 1, 1)
        latents = model.encode_latents(x)
    torch.testing.assert_close(latents, expected)
    if model_class is VQAutoencoder:  # z_e is deterministic: the model's own latents are standardised
        torch.testing.assert_close(latents.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(latents.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("latent_norm", ["global", "channel"])
def test_from_diffusion_inverts_to_diffusion(latent_norm):
    model = model_for(AutoencoderKL, latent_norm)
    compute_scale_factor(model, images())
    z = torch.randn(5, 3, 4, 4) * 3 + 1
    torch.testing.assert_close(from_diffusion(model, to_diffusion(model, z)), z)


def test_shift_and_scale_equal_numpys_per_channel_mean_and_std():
    model, x = model_for(AutoencoderKL, "channel"), images()
    compute_scale_factor(model, x, seed=5)
    z = sampled_latents(model, x, seed=5).numpy().astype(np.float64)
    np.testing.assert_allclose(model.latent_shift.numpy(), z.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.scale_factor.numpy(), 1 / z.std(axis=(0, 2, 3), ddof=1), rtol=1e-5)


@pytest.mark.parametrize("model_class", [AutoencoderKL, VQAutoencoder])
@pytest.mark.parametrize("latent_norm", ["global", "channel"])
def test_decode_latents_undoes_encode_latents(model_class, latent_norm):
    model, x = model_for(model_class, latent_norm), images(4)
    compute_scale_factor(model, images())
    with torch.no_grad():
        raw = model.encode(x)
        raw = raw if isinstance(raw, torch.Tensor) else raw.mode()
        torch.testing.assert_close(model.decode_latents(model.encode_latents(x)), model.decode(raw))


def test_global_is_ldms_single_number():
    model, x = model_for(AutoencoderKL, "global"), images()
    scale = compute_scale_factor(model, x, seed=0)
    assert model.scale_factor.ndim == 0 and not hasattr(model, "latent_shift")
    assert scale == pytest.approx(1 / sampled_latents(model, x, seed=0).std().item())
    with torch.no_grad():
        torch.testing.assert_close(model.encode_latents(x), model.encode(x).mode() * scale)


@pytest.mark.parametrize("model_class", [AutoencoderKL, VQAutoencoder])
def test_a_per_channel_autoencoder_survives_save_and_load(model_class, tmp_path):
    model, x = model_for(model_class, "channel"), images()
    compute_scale_factor(model, x)
    save_autoencoder(model, tmp_path / "ae.pt")
    loaded = load_autoencoder(tmp_path / "ae.pt")
    assert loaded.config.latent_norm == "channel"
    torch.testing.assert_close(loaded.latent_shift, model.latent_shift)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_latents(x), model.encode_latents(x))


def test_a_stored_factor_that_disagrees_with_the_weights_is_refused():
    model = model_for(AutoencoderKL, "channel")
    compute_scale_factor(model, images())
    checkpoint = autoencoder_checkpoint(model)
    checkpoint["scale_factor"] = [1.0, 2.0, 3.0]
    with pytest.raises(CheckpointError, match="disagrees with its state_dict"):
        autoencoder_from_checkpoint(checkpoint)
    checkpoint["scale_factor"] = 0.5  # one number for a per-channel model
    with pytest.raises(CheckpointError, match="disagrees with its state_dict"):
        autoencoder_from_checkpoint(checkpoint)
    checkpoint["scale_factor"] = "big"
    with pytest.raises(CheckpointError, match="not a number or a list of numbers"):
        autoencoder_from_checkpoint(checkpoint)


def test_a_checkpoint_written_before_the_option_loads_as_global():
    model = model_for(AutoencoderKL, "global")
    model.scale_factor.fill_(0.25)
    checkpoint = autoencoder_checkpoint(model)
    del checkpoint["config"]["latent_norm"]  # as files written before latent_norm existed
    loaded = autoencoder_from_checkpoint(checkpoint)
    assert loaded.config.latent_norm == "global" and float(loaded.scale_factor) == 0.25


def test_a_bad_latent_norm_is_a_one_line_error():
    with pytest.raises(ValueError, match="latent_norm must be 'global' or 'channel', got 'per-pixel'"):
        dataclasses.replace(TINY, latent_norm="per-pixel")
    with pytest.raises(ConfigError, match="latent_norm must be 'global' or 'channel'"):
        resolve(preset("quick"), {"autoencoder.latent_norm": "per-pixel"})
