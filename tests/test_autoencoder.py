"""The autoencoder's math and its parity with diffusers (LDM sec. 3.1).

Identities: the KL of the Gaussian posterior in closed form equals torch.distributions';
the reparameterised sample is mu + sigma * eps; VQ picks the true nearest codebook vector and
passes the gradient straight through; the scale factor gives latents of unit std.
Parity: a diffusers AutoencoderKL of the same (tiny) configuration, converted, encodes and
decodes to the same numbers within 1e-5 in float32.
"""

import pytest
import torch
from diffusers import AutoencoderKL as DiffusersAutoencoderKL

from minildm.autoencoder import (
    AutoencoderConfig,
    AutoencoderKL,
    DiagonalGaussian,
    VectorQuantizer,
    VQAutoencoder,
    compute_scale_factor,
)
from minildm.convert.diffusers_vae import config_from_diffusers, load_diffusers_vae

TINY = {"base_channels": 8, "num_res_blocks": 1, "latent_channels": 3, "norm_groups": 4, "codebook_size": 16}


@pytest.mark.parametrize("channel_mult,f", [((1,), 1), ((1, 2), 2), ((1, 2, 2), 4), ((1, 1, 2, 2), 8)])
@pytest.mark.parametrize("model_class", [AutoencoderKL, VQAutoencoder])
def test_latent_shape_follows_the_downsampling_factor(channel_mult, f, model_class):
    cfg = AutoencoderConfig(kind=model_class.kind, channel_mult=channel_mult, **TINY)
    assert cfg.downsampling_factor == f
    model = model_class(cfg)
    x = torch.randn(2, 3, 16, 16)
    latents = model.encode_latents(x)
    assert latents.shape == (2, 3, 16 // f, 16 // f)
    assert model.decode_latents(latents).shape == x.shape


def test_config_rejects_channels_that_groupnorm_cannot_split():
    with pytest.raises(ValueError, match="multiple of norm_groups"):
        AutoencoderConfig(base_channels=12, norm_groups=8)


def test_kl_closed_form_equals_torch_distributions():
    moments = torch.randn(3, 8, 4, 4)
    posterior = DiagonalGaussian(moments)
    q = torch.distributions.Normal(posterior.mean, posterior.std)
    prior = torch.distributions.Normal(torch.zeros_like(posterior.mean), torch.ones_like(posterior.std))
    expected = torch.distributions.kl_divergence(q, prior).sum(dim=(1, 2, 3))
    torch.testing.assert_close(posterior.kl(), expected, rtol=1e-5, atol=1e-5)


def test_kl_is_zero_exactly_at_the_prior():
    assert torch.all(DiagonalGaussian(torch.zeros(2, 4, 3, 3)).kl() == 0)


def test_sample_is_reparameterised_and_has_the_posterior_moments():
    mean, logvar = torch.full((1, 1, 200, 200), 1.5), torch.full((1, 1, 200, 200), -1.0)
    posterior = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    z = posterior.sample(torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, mean + torch.exp(0.5 * logvar) * eps)
    # Monte Carlo over 40,000 draws: standard errors ~0.003 on the mean, ~0.002 on the std
    assert abs(z.mean().item() - 1.5) < 0.015
    assert abs(z.std().item() - torch.exp(torch.tensor(-0.5)).item()) < 0.01
    assert torch.equal(posterior.mode(), mean)


def test_vq_picks_the_nearest_codebook_vector():
    quantizer = VectorQuantizer(codebook_size=32, dim=5, beta=0.25)
    torch.nn.init.normal_(quantizer.codebook.weight)
    z_e = torch.randn(2, 5, 3, 4)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 5)  # (24, 5)
    brute_force = torch.cdist(flat, quantizer.codebook.weight).argmin(dim=1).view(2, 3, 4)
    assert torch.equal(quantizer.nearest(z_e), brute_force)
    out = quantizer(z_e)
    torch.testing.assert_close(out.z_q, quantizer.codebook.weight[brute_force].permute(0, 3, 1, 2))


def test_vq_straight_through_gradient_and_loss():
    quantizer = VectorQuantizer(codebook_size=8, dim=4, beta=0.25)
    torch.nn.init.normal_(quantizer.codebook.weight)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = quantizer(z_e)
    upstream = torch.randn_like(out.z_q)
    (grad_z_e,) = torch.autograd.grad((out.z_q * upstream).sum(), z_e, retain_graph=True)
    torch.testing.assert_close(grad_z_e, upstream)  # d z_q / d z_e = identity
    e = quantizer.lookup(out.indices)
    # L_vq = (1 + beta) * mean ||z_e - e||^2 in value
    torch.testing.assert_close(out.loss, 1.25 * (z_e - e).pow(2).mean())
    # commitment gradient on z_e: beta * 2 (z_e - e) / n; codebook gradient: 2 (e - z_e) / n per use
    (grad_commit,) = torch.autograd.grad(out.loss, z_e, retain_graph=True)
    torch.testing.assert_close(grad_commit, 0.25 * 2 * (z_e - e).detach() / z_e.numel())
    (grad_codebook,) = torch.autograd.grad(out.loss, quantizer.codebook.weight)
    expected = torch.zeros_like(quantizer.codebook.weight)
    per_vector = 2 * (e - z_e).detach().permute(0, 2, 3, 1).reshape(-1, 4) / z_e.numel()  # (18, 4)
    expected.index_add_(0, out.indices.flatten(), per_vector)
    torch.testing.assert_close(grad_codebook, expected)


def test_vq_perplexity_and_usage():
    quantizer = VectorQuantizer(codebook_size=4, dim=2, beta=0.25)
    quantizer.codebook.weight.data = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    every_code = quantizer.codebook.weight.t().reshape(1, 2, 2, 2).repeat(3, 1, 1, 1)  # each code 3 times
    out = quantizer(every_code)
    assert out.perplexity.item() == pytest.approx(4.0) and out.usage.item() == 1.0
    out = quantizer(torch.zeros(1, 2, 3, 3))  # everything on code 0
    assert out.perplexity.item() == pytest.approx(1.0) and out.usage.item() == 0.25


def test_scale_factor_gives_unit_std_latents():
    model = AutoencoderKL(AutoencoderConfig(channel_mult=(1, 2), **TINY)).eval()
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    scale = compute_scale_factor(model, x, seed=0)
    assert float(model.scale_factor) == pytest.approx(scale)
    with torch.no_grad():
        latents = model.encode_latents(x, sample=True, generator=torch.Generator().manual_seed(0))
        assert latents.std().item() == pytest.approx(1.0, abs=1e-5)
        # decode_latents undoes the scaling
        torch.testing.assert_close(model.decode_latents(model.encode_latents(x)), model.decode(model.encode(x).mode()))


def test_diffusers_autoencoder_kl_parity():
    reference = DiffusersAutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=4,
        scaling_factor=0.3,
    ).eval()
    # make every bias and norm non-trivial so a mis-mapped weight cannot hide
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model = load_diffusers_vae(reference.config, reference.state_dict())
    assert config_from_diffusers(reference.config).channel_mult == (1, 2, 2)
    assert float(model.scale_factor) == pytest.approx(0.3)
    x = torch.randn(2, 3, 16, 16)
    z = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        expected = reference.encode(x).latent_dist
        posterior = model.encode(x)
        torch.testing.assert_close(posterior.mean, expected.mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(posterior.logvar, expected.logvar, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.decode(z), reference.decode(z).sample, rtol=1e-5, atol=1e-5)


def test_converter_rejects_what_it_cannot_represent():
    config = dict(
        DiffusersAutoencoderKL(
            block_out_channels=(8,),
            norm_num_groups=4,
            down_block_types=("DownEncoderBlock2D",),
            up_block_types=("UpDecoderBlock2D",),
        ).config
    )
    config["shift_factor"] = 0.1
    with pytest.raises(ValueError, match="shift_factor"):
        config_from_diffusers(config)
