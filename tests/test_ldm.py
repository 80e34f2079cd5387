"""LatentDiffusion: the conditioning, the loss with condition dropout, latents, checkpoints."""

import dataclasses

import pytest
import torch

from minildm.autoencoder import AutoencoderConfig, AutoencoderKL
from minildm.checkpoint import CheckpointError, save_checkpoint
from minildm.diffusion import ScheduleConfig
from minildm.diffusion.flow import timesteps_of_flow_times
from minildm.ldm import Condition, LatentDiffusion, LDMBatch, LDMConfig, load_ldm
from minildm.nn import UNetConfig
from minildm.text import CLIPTokenizer, TextEncoderConfig, train_bpe

CAPTIONS = ["a large red circle at the top left", "a small blue square in the centre", "a green triangle"]


def tiny_ldm(conditioning: str = "text", prediction_type: str = "eps", extra_in_channels: int = 0) -> LatentDiffusion:
    """A model of a few thousand parameters on 16x16 images (f = 2, latents 4x8x8)."""
    autoencoder = AutoencoderKL(
        AutoencoderConfig(
            base_channels=8, channel_mult=(1, 2), latent_channels=4, attention_in_middle=False, norm_groups=4
        )
    )
    autoencoder.scale_factor.fill_(0.7)
    tokenizer = CLIPTokenizer.from_merges(train_bpe(CAPTIONS, 80))
    text = TextEncoderConfig(vocab_size=tokenizer.vocab_size, context_length=16, width=16, num_layers=1, num_heads=2)
    unet = UNetConfig(
        in_channels=4, extra_in_channels=extra_in_channels, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
        attention_levels=(1,), head_dim=8, norm_groups=8,
        context_dim=16 if conditioning == "text" else None, num_classes=5 if conditioning == "class" else None,
    )  # fmt: skip
    config = LDMConfig(
        unet=unet,
        schedule=ScheduleConfig(num_timesteps=100),
        conditioning=conditioning,
        text_encoder=text if conditioning == "text" else None,
        prediction_type=prediction_type,
        image_size=16,
    )
    return LatentDiffusion(config, autoencoder, tokenizer if conditioning == "text" else None)


def tiny_batch(ldm: LatentDiffusion, B: int = 4) -> LDMBatch:
    latents = torch.randn(B, 4, 8, 8)
    if ldm.config.conditioning == "text":
        return LDMBatch(latents, tokens=ldm.tokenize([CAPTIONS[i % 3] for i in range(B)]))
    return LDMBatch(latents, class_labels=torch.arange(B) % 5)


def test_latents_are_the_scaled_posterior_mean_and_decode_inverts_the_scale():
    ldm = tiny_ldm()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = ldm.encode_images(x)
    assert z.shape == (2, *ldm.latent_shape()) == (2, 4, 8, 8)
    # z0 = s * mean(E(x))
    torch.testing.assert_close(z, ldm.autoencoder.encode(x).mode() * 0.7)
    # D(z0 / s)
    torch.testing.assert_close(ldm.decode_latents(z), ldm.autoencoder.decode(z / 0.7).clamp(-1, 1))


@pytest.mark.parametrize("conditioning", ["text", "class"])
def test_dropping_every_condition_is_training_on_the_null_condition(conditioning):
    """cond_drop_prob = 1 gives exactly the loss of the same batch with the null condition."""
    ldm = tiny_ldm(conditioning)
    batch = tiny_batch(ldm)
    dropped = ldm.training_loss(batch, cond_drop_prob=1.0, generator=torch.Generator().manual_seed(3))
    if conditioning == "text":
        null_batch = dataclasses.replace(batch, tokens=ldm.null_tokens(4))
        assert ldm.null_tokens(1)[0, :2].tolist() == [ldm.tokenizer.sot_token_id, ldm.tokenizer.eot_token_id]
    else:
        null_batch = dataclasses.replace(batch, class_labels=torch.full((4,), 5))
    explicit = ldm.training_loss(null_batch, cond_drop_prob=0.0, generator=torch.Generator().manual_seed(3))
    kept = ldm.training_loss(batch, cond_drop_prob=0.0, generator=torch.Generator().manual_seed(3))
    assert dropped.item() == explicit.item()
    assert kept.item() != dropped.item()


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_loss_is_the_mse_to_the_target_of_the_prediction_type(prediction_type):
    ldm = tiny_ldm(prediction_type=prediction_type)
    batch = tiny_batch(ldm)
    loss = ldm.training_loss(batch, generator=torch.Generator().manual_seed(1))
    # redo the draws of training_loss in the same order: t, noise, drop
    generator = torch.Generator().manual_seed(1)
    t = torch.randint(0, 100, (4,), generator=generator)
    noise = torch.randn(batch.latents.shape, generator=generator)
    z_t = ldm.schedule.q_sample(batch.latents, t, noise)
    output = ldm.predict(z_t, t, ldm.encode_tokens(batch.tokens))
    target = ldm.schedule.target(prediction_type, batch.latents, noise, t)
    torch.testing.assert_close(loss, ((output - target) ** 2).mean())


def test_concat_conditioning_reaches_the_unet():
    ldm = tiny_ldm(extra_in_channels=3)
    batch = dataclasses.replace(tiny_batch(ldm), concat=torch.randn(4, 3, 8, 8))
    loss = ldm.training_loss(batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert ldm.unet.conv_in.weight.grad[:, 4:].abs().sum() > 0  # the 3 concat channels learn


def test_encode_condition_and_null_condition():
    ldm = tiny_ldm()
    cond = ldm.encode_condition(["a red circle", "a blue square"])
    assert cond.context.shape == (2, 16, 16) and cond.class_labels is None
    null = ldm.null_condition(2)
    torch.testing.assert_close(null.context, ldm.encode_condition(["", ""]).context)
    joined = Condition.cat([null, cond])
    assert joined.context.shape == (4, 16, 16)
    with pytest.raises(ValueError, match="context_length=16"):
        ldm.tokenize(["a very long prompt " * 5])
    class_ldm = tiny_ldm("class")
    assert class_ldm.null_condition(3).class_labels.tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="give class_labels"):
        class_ldm.encode_condition(["a red circle"])


def test_the_autoencoder_is_frozen():
    ldm = tiny_ldm()
    assert not any(p.requires_grad for p in ldm.autoencoder.parameters())
    ldm.train()
    assert not ldm.autoencoder.training and ldm.unet.training


def test_config_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="prediction_type must be"):
        LDMConfig(prediction_type="noise")
    with pytest.raises(ValueError, match="context_dim must equal the text encoder's width"):
        LDMConfig(unet=UNetConfig(context_dim=32), text_encoder=TextEncoderConfig(width=64))
    with pytest.raises(ValueError, match="zero-terminal-SNR schedule needs prediction_type 'v' or 'x0'"):
        LDMConfig(unet=UNetConfig(context_dim=64), text_encoder=TextEncoderConfig(width=64),
                  schedule=ScheduleConfig(zero_terminal_snr=True), prediction_type="eps")  # fmt: skip


def test_checkpoint_round_trip(tmp_path):
    ldm = tiny_ldm()
    save_checkpoint(ldm.checkpoint_state(), tmp_path / "ldm.pt")
    loaded = load_ldm(tmp_path / "ldm.pt")
    assert loaded.config == ldm.config and loaded.tokenizer.merges == ldm.tokenizer.merges
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([5, 50])
    ldm.eval()
    cond = ldm.encode_condition(["a red circle", ""])
    torch.testing.assert_close(
        loaded.predict(z, t, loaded.encode_condition(["a red circle", ""])), ldm.predict(z, t, cond)
    )
    assert float(loaded.autoencoder.scale_factor) == pytest.approx(0.7)


def test_load_ldm_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_ldm(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_ldm(tmp_path / "bad.pt")
    save_checkpoint({"kind": "something else", "config": {}, "autoencoder_config": {}, "model": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="expected a latent diffusion model"):
        load_ldm(tmp_path / "x.pt")


def test_the_unet_must_take_and_predict_the_autoencoders_latent_channels():
    ldm = tiny_ldm()
    for change in ({"in_channels": 3}, {"out_channels": 3}):
        unet = dataclasses.replace(ldm.config.unet, **change)
        with pytest.raises(
            ValueError, match=f"the U-Net's {next(iter(change))} must equal the autoencoder's latent_channels"
        ):
            LatentDiffusion(dataclasses.replace(ldm.config, unet=unet), ldm.autoencoder, ldm.tokenizer)


def test_pooled_text_is_the_end_token_state_and_reaches_the_unet():
    plain = tiny_ldm()
    config = dataclasses.replace(
        plain.config, unet=dataclasses.replace(plain.config.unet, pooled_dim=16), pooled_text=True
    )
    ldm = LatentDiffusion(config, plain.autoencoder, plain.tokenizer)
    tokens = ldm.tokenize(["a red circle", "a blue square"])
    cond = ldm.encode_tokens(tokens)
    hidden, pooled = ldm.text_encoder(tokens)
    torch.testing.assert_close(cond.pooled, pooled)
    torch.testing.assert_close(cond.pooled, hidden[torch.arange(2), tokens.argmax(-1)])
    assert plain.encode_tokens(tokens).pooled is None  # the plain model's U-Net takes none
    joined = Condition.cat([ldm.null_condition(2), cond])
    assert joined.pooled.shape == (4, 16)
    loss = ldm.training_loss(tiny_batch(ldm), cond_drop_prob=0.5)
    loss.backward()
    assert ldm.unet.pooled_embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="with pooled_text=True the U-Net's pooled_dim must be 16"):
        dataclasses.replace(plain.config, unet=dataclasses.replace(plain.config.unet, pooled_dim=8), pooled_text=True)
    with pytest.raises(ValueError, match="with pooled_text=False the U-Net's pooled_dim must be None"):
        dataclasses.replace(plain.config, unet=dataclasses.replace(plain.config.unet, pooled_dim=16))


def test_an_ldm_trains_and_samples_on_a_vq_first_stage(tmp_path):
    """The paper's LDM-VQ: the same LatentDiffusion on a VQ autoencoder; the LDM never asks which
    first stage it has, and its checkpoint rebuilds the VQ one."""
    from minildm.autoencoder import VQAutoencoder
    from minildm.pipelines import make_sampler, text_to_image
    from minildm.train.trainer import TensorBatches, TrainConfig, train_ldm

    kl = tiny_ldm()
    vq = VQAutoencoder(dataclasses.replace(kl.autoencoder.config, kind="vq", codebook_size=16)).eval()
    vq.scale_factor.fill_(0.5)
    ldm = LatentDiffusion(kl.config, vq, kl.tokenizer)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = ldm.encode_images(x)  # s * z_e, before quantization
        torch.testing.assert_close(z, vq.encode(x) * 0.5)
        # D(quantize(z / s)): the decoder absorbs the quantization
        torch.testing.assert_close(
            ldm.decode_latents(z), vq.decoder(vq.post_quant_conv(vq.quantize(z / 0.5).z_q)).clamp(-1, 1)
        )
    tokens = ldm.tokenize([CAPTIONS[i % 3] for i in range(4)])
    history = train_ldm(
        ldm, TensorBatches(z, tokens=tokens), TrainConfig(steps=2, batch_size=4), out_dir=tmp_path, progress=False
    )
    assert len(history["loss"]) == 2
    loaded = load_ldm(tmp_path / "ldm.pt")
    assert type(loaded.autoencoder) is VQAutoencoder and float(loaded.autoencoder.scale_factor) == 0.5
    images = text_to_image(
        loaded, make_sampler(loaded, "ddim", 2), CAPTIONS[:2], generator=torch.Generator().manual_seed(0)
    )
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()


def test_diffusion_ldm_trains_on_timesteps_drawn_in_flow_time(monkeypatch):
    base = tiny_ldm(prediction_type="v")
    config = dataclasses.replace(
        base.config, schedule=ScheduleConfig(num_timesteps=100, zero_terminal_snr=True),
        timesteps="flow_times", flow_noise_end=0.1, flow_noise_end_from=1.0,
    )  # fmt: skip
    ldm = LatentDiffusion(config, base.autoencoder, base.tokenizer)
    seen, predict = [], ldm.predict
    monkeypatch.setattr(
        ldm, "predict", lambda z_t, t, *args, **kwargs: seen.append(t) or predict(z_t, t, *args, **kwargs)
    )
    loss = ldm.training_loss(tiny_batch(ldm, 512), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and seen[0].dtype == torch.long
    # the flow times the same generator draws first, each rounded to its nearest timestep
    flow_times = ldm.flow_times(512, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(seen[0], timesteps_of_flow_times(flow_times, ldm.schedule.alphas_cumprod))
    # the t = 1 share (about 10%) lands on the zero-SNR last step
    at_end = flow_times == 1.0
    assert 0.05 < at_end.double().mean().item() < 0.15 and (seen[0][at_end] == 99).all()
    with pytest.raises(ValueError, match="timesteps must be"):
        LDMConfig(timesteps="cosine")
