"""The autoencoder's loss and training loop (LDM sec. 3.1; VQGAN eq. 5-7).

Pinned values of the hinge and non-saturating GAN losses, the adaptive weight against its
formula, the disc_start switch, LPIPS's honest refusal without its backbone, the LPIPS code
path (with a random backbone, a code-path test only: never an LPIPS value), checkpoints
and resume.
"""

import dataclasses
import math

import lpips
import pytest
import torch

from minildm.autoencoder import (
    AutoencoderConfig,
    AutoencoderKL,
    AutoencoderTrainConfig,
    LPIPSUnavailable,
    LPIPSUnavailableWarning,
    VQAutoencoder,
    load_autoencoder,
    load_lpips,
    lpips_backbone_path,
    save_autoencoder,
    train_autoencoder,
)
from minildm.autoencoder.discriminator import DiscriminatorConfig, PatchDiscriminator
from minildm.autoencoder.losses import (
    AutoencoderLoss,
    adaptive_weight,
    generator_loss,
    hinge_d_loss,
    non_saturating_d_loss,
)
from minildm.train.lr import learning_rate

TINY = AutoencoderConfig(
    base_channels=8, channel_mult=(1, 2), num_res_blocks=1, latent_channels=3, norm_groups=4, codebook_size=16
)


def tiny_train_config(**changes) -> AutoencoderTrainConfig:
    settings = {
        "steps": 3,
        "batch_size": 4,
        "lr": 1e-3,
        "perceptual_weight": 0.0,
        "disc_start": 1,
        "disc_channels": 8,
        "disc_layers": 2,
        "scale_factor_images": 8,
    }
    settings.update(changes)
    return AutoencoderTrainConfig(**settings)


def config_for(model_class) -> AutoencoderConfig:
    return dataclasses.replace(TINY, kind=model_class.kind)


def train(model, data, config, out_dir=None):
    """The trainer's convention: it trains `model` in place and returns the history."""
    return model, train_autoencoder(model, data, config, out_dir=out_dir, progress=False)


def images(n: int = 8, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size) * 2 - 1


def test_gan_loss_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # hinge: 1/2 [mean relu(1 - real) + mean relu(1 + fake)] = 1/2 [(0 + 0.5)/2 + (0 + 1.5)/2]
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5)
    # non-saturating: 1/2 [mean softplus(-real) + mean softplus(fake)]
    expected = 0.5 * (
        (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-0.5))) / 2
        + (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(0.5))) / 2
    )
    assert non_saturating_d_loss(real, fake).item() == pytest.approx(expected)
    assert generator_loss(fake, "hinge").item() == pytest.approx(0.75)
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(
        (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-0.5))) / 2
    )
    # a perfect discriminator pays nothing under hinge
    assert hinge_d_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])).item() == 0.0


def test_adaptive_weight_is_the_gradient_norm_ratio():
    last_layer = torch.randn(3, 5, requires_grad=True)
    inputs = torch.randn(5)
    output = last_layer @ inputs
    rec_loss, g_loss = output.pow(2).sum(), 3.0 * output.sum()
    # grad rec = 2 out x^T, grad g = 3 * 1 x^T
    rec_norm = (2 * output.detach()[:, None] * inputs[None]).norm()
    g_norm = (3 * torch.ones(3)[:, None] * inputs[None]).norm()
    weight = adaptive_weight(rec_loss, g_loss, last_layer, disc_weight=0.5)
    assert weight.item() == pytest.approx(0.5 * (rec_norm / (g_norm + 1e-4)).item(), rel=1e-6)
    assert not weight.requires_grad


def test_gan_terms_switch_on_at_disc_start():
    model = AutoencoderKL(TINY)
    model, history = train(model, images(), tiny_train_config(steps=4, disc_start=2))
    assert len(history["l1"]) == 4
    assert len(history["g_loss"]) == 2 and len(history["d_loss"]) == 2  # steps 2 and 3 only
    assert all(w > 0 for w in history["d_weight"])


def test_no_gan_with_disc_start_none_however_long_the_run():
    # the short-run recipe trains without a GAN; a longer run from the command line must not switch one on
    from minildm.config import Config, resolve

    longer = resolve(Config(), {"autoencoder_train.steps": 8000}).autoencoder_train
    assert longer.steps == 8000 and longer.disc_start is None
    model, history = train(AutoencoderKL(TINY), images(), tiny_train_config(steps=4, disc_start=None))
    assert len(history["l1"]) == 4 and "g_loss" not in history and "d_loss" not in history
    loss_fn = AutoencoderLoss(PatchDiscriminator(DiscriminatorConfig(3, 8, 2)), None, 0.0, 0.5, None, "hinge", True)
    assert not loss_fn.gan_active(10**9)
    with pytest.raises(ValueError, match=r"disc_start must be >= 0 \(or None: no GAN\), got -1"):
        tiny_train_config(disc_start=-1)


def test_discriminator_untouched_before_disc_start():
    loss_fn = AutoencoderLoss(PatchDiscriminator(DiscriminatorConfig(3, 8, 2)), None, 0.0, 0.5, 5, "hinge", True)
    model = AutoencoderKL(TINY)
    x = images(2)
    x_rec, _ = model(x)
    loss_before, logs = loss_fn.generator_loss(x, x_rec, torch.tensor(0.0), step=4, last_layer=model.decoder.last_layer)
    assert "g_loss" not in logs
    assert loss_before.item() == pytest.approx((x - x_rec).abs().sum().item() / 2, rel=1e-5)
    loss_after, logs = loss_fn.generator_loss(x, x_rec, torch.tensor(0.0), step=5, last_layer=model.decoder.last_layer)
    assert loss_after.item() == pytest.approx(loss_before.item() + logs["d_weight"] * logs["g_loss"], rel=1e-5)


def test_missing_lpips_says_so_with_the_path(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert lpips_backbone_path("alex") == path
    with pytest.raises(LPIPSUnavailable, match="alexnet-owt-7be5be79.pth"):
        load_lpips("alex", allow_missing=False)
    with pytest.warns(LPIPSUnavailableWarning, match=str(path)):
        assert load_lpips("alex", allow_missing=True) is None
    # a training run that wants LPIPS says it once, and logs no LPIPS value
    with pytest.warns(LPIPSUnavailableWarning) as caught:
        _, history = train(AutoencoderKL(TINY), images(), tiny_train_config(perceptual_weight=1.0))
    assert len([w for w in caught if w.category is LPIPSUnavailableWarning]) == 1
    assert "lpips" not in history
    with pytest.raises(LPIPSUnavailable):
        train(AutoencoderKL(TINY), images(), tiny_train_config(perceptual_weight=1.0, allow_missing_lpips=False))


def test_perceptual_term_code_path_with_a_random_backbone():
    """Code-path test only: lpips' shipped linear heads on a RANDOM AlexNet (pnet_rand=True,
    nothing downloaded). The number it gives is not LPIPS and is never reported as such."""
    random_backbone = (
        lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False).eval().requires_grad_(False)
    )
    loss_fn = AutoencoderLoss(
        PatchDiscriminator(DiscriminatorConfig(3, 8, 2)), random_backbone, 0.7, 0.5, 100, "hinge", False
    )
    x = images(2, size=32)  # AlexNet's pooling needs at least 32x32
    x_rec = images(2, size=32).requires_grad_(True)
    loss, logs = loss_fn.reconstruction_loss(x, x_rec)
    distance = random_backbone(x, x_rec)  # (2, 1, 1, 1)
    expected = ((x - x_rec).abs() + 0.7 * distance).mean()
    torch.testing.assert_close(loss, expected)
    assert logs["lpips"] == pytest.approx(distance.mean().item())
    (grad,) = torch.autograd.grad(loss, x_rec)
    (grad_l1,) = torch.autograd.grad((x - x_rec).abs().mean(), x_rec)
    assert not torch.allclose(grad, grad_l1)  # the perceptual term reaches the reconstruction


@pytest.mark.parametrize("model_class", [AutoencoderKL, VQAutoencoder])
def test_checkpoint_roundtrip(model_class, tmp_path):
    model = model_class(config_for(model_class)).eval()
    model.scale_factor.fill_(0.42)
    save_autoencoder(model, tmp_path / "ae.pt")
    loaded = load_autoencoder(tmp_path / "ae.pt")
    assert type(loaded) is model_class and not loaded.training
    assert float(loaded.scale_factor) == pytest.approx(0.42)
    x = images(2)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.decode_latents(loaded.encode_latents(x)), model.decode_latents(model.encode_latents(x))
        )


@pytest.mark.parametrize("model_class", [AutoencoderKL, VQAutoencoder])
def test_resume_continues_exactly(model_class, tmp_path):
    data = images(16)
    torch.manual_seed(1)  # the same initial autoencoder and discriminator in both runs
    straight, straight_history = train(
        model_class(config_for(model_class)), data, tiny_train_config(steps=4), tmp_path / "a"
    )
    torch.manual_seed(1)
    train(model_class(config_for(model_class)), data, tiny_train_config(steps=2), tmp_path / "b")
    resumed, resumed_history = train(
        model_class(config_for(model_class)), data, tiny_train_config(steps=4, resume=True), tmp_path / "b"
    )
    assert resumed_history == straight_history
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert (tmp_path / "b" / "losses.png").is_file() and (tmp_path / "b" / "reconstructions_000004.png").is_file()
    assert type(load_autoencoder(tmp_path / "b" / "autoencoder.pt")) is model_class


def test_vq_training_reports_codebook_health():
    _, history = train(VQAutoencoder(config_for(VQAutoencoder)), images(), tiny_train_config(steps=2))
    assert all(1.0 <= p <= TINY.codebook_size for p in history["perplexity"])
    assert all(0.0 < u <= 1.0 for u in history["usage"])


def test_pixel_loss_reductions():
    """L_rec = sum |x - x~| / B (KL, "l1") and sum (x - x~)^2 / B (KL, "mse"); means for VQ."""
    x, x_rec = images(2), images(2)
    disc = PatchDiscriminator(DiscriminatorConfig(3, 8, 2))
    for pixel_loss, error in (("l1", (x - x_rec).abs()), ("mse", (x - x_rec).pow(2))):
        summed = AutoencoderLoss(disc, None, 0.0, 0.5, 100, "hinge", True, pixel_loss).reconstruction_loss(x, x_rec)[0]
        torch.testing.assert_close(summed, error.sum() / 2)
        mean = AutoencoderLoss(disc, None, 0.0, 0.5, 100, "hinge", False, pixel_loss).reconstruction_loss(x, x_rec)[0]
        torch.testing.assert_close(mean, error.mean())
    with pytest.raises(ValueError, match="pixel_loss"):
        AutoencoderLoss(disc, None, 0.0, 0.5, 100, "hinge", True, "l2")


def test_learning_rate_schedule():
    def factor(step, steps=110, warmup=10, schedule="cosine"):
        return learning_rate(step, 1.0, steps, warmup, schedule)

    # warmup: (step + 1) / warmup_steps
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    # cosine: (1 + cos(pi * (step - warmup) / (steps - warmup))) / 2
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)
    assert factor(109) == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert factor(50, warmup=0, schedule="constant") == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        AutoencoderTrainConfig(lr_schedule="linear")


def test_a_folder_with_a_trained_autoencoder_is_resumed_or_refused(tmp_path):
    from minildm.train.runs import RunError

    train(AutoencoderKL(TINY), images(), tiny_train_config(steps=2), tmp_path)
    with pytest.raises(RunError, match="--autoencoder_train.resume=true .* --overwrite"):
        train(AutoencoderKL(TINY), images(), tiny_train_config(steps=2), tmp_path)
    with pytest.raises(RunError, match="trained 2 steps, more than the 1 asked for"):
        train(AutoencoderKL(TINY), images(), tiny_train_config(steps=1, resume=True), tmp_path)
    other = AutoencoderConfig(base_channels=8, channel_mult=(1, 2), latent_channels=2, norm_groups=4, codebook_size=16)
    with pytest.raises(RunError, match=r"model config differs: latent_channels \(3 in the checkpoint, 2 now\)"):
        train(AutoencoderKL(other), images(), tiny_train_config(steps=3, resume=True), tmp_path)
    model, history = train(AutoencoderKL(TINY), images(), tiny_train_config(steps=1), None)
    assert len(history["l1"]) == 1
    train_autoencoder(
        AutoencoderKL(TINY), images(), tiny_train_config(steps=1), out_dir=tmp_path, overwrite=True, progress=False
    )
    assert load_autoencoder(tmp_path / "autoencoder.pt") is not None


def test_bad_training_values_are_refused_before_any_work():
    for changes, words in (
        ({"steps": -3}, "steps >= 0"),
        ({"batch_size": 0}, "batch_size >= 1"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"pixel_loss": "l2"}, "pixel_loss"),
    ):
        with pytest.raises(ValueError, match=words):
            tiny_train_config(**changes)


def test_a_checkpoint_from_before_the_config_carried_its_kind_still_loads(tmp_path):
    """Earlier checkpoints said "kind": "kl" | "vq" beside a config without one (caches under runs/)."""
    from minildm.autoencoder.saving import autoencoder_checkpoint

    model = VQAutoencoder(config_for(VQAutoencoder)).eval()
    state = autoencoder_checkpoint(model)
    state["config"].pop("kind")
    state["kind"] = "vq"
    torch.save(state, tmp_path / "old.pt")
    loaded = load_autoencoder(tmp_path / "old.pt")
    assert type(loaded) is VQAutoencoder and loaded.config.kind == "vq"
