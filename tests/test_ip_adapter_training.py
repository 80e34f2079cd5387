"""Training an IP-Adapter on a frozen tiny LDM: only the new projections change, lambda = 0 gives
back the text-only sampler exactly, a saved adapter samples the same images, the condition drops
have their probabilities, and the diversity number is the RMS pixel distance."""

import pytest
import torch

from minildm.autoencoder import AutoencoderConfig, AutoencoderKL
from minildm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minildm.clip.image_prompt import image_prompt_to_image, image_variations, mean_pairwise_distance
from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.vision import VisionEncoderConfig
from minildm.diffusion import ScheduleConfig
from minildm.ldm import LatentDiffusion, LDMConfig
from minildm.nn import UNetConfig
from minildm.pipelines import make_sampler, text_to_image
from minildm.text import CLIPTokenizer, TextEncoderConfig
from minildm.train.ip_adapter import (
    IPAdapterTrainConfig,
    adapter_fits,
    condition_drops,
    embed_images,
    load_ip_adapter,
    save_ip_adapter,
    train_ip_adapter,
)

SIZE = 16
PROMPTS = ["a red circle", "a blue square"]


def tiny_ldm() -> LatentDiffusion:
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(
        AutoencoderConfig(
            base_channels=8, channel_mult=(1, 2), latent_channels=4, norm_groups=4, attention_in_middle=False
        )
    )
    tokenizer = CLIPTokenizer.from_merges([])
    unet = UNetConfig(
        in_channels=4, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0, 1),
        num_heads=2, context_dim=16, norm_groups=8, pooled_dim=16,
    )  # fmt: skip
    config = LDMConfig(
        unet=unet,
        schedule=ScheduleConfig(num_timesteps=100),
        text_encoder=TextEncoderConfig(
            vocab_size=tokenizer.vocab_size, context_length=16, width=16, num_layers=1, num_heads=2
        ),
        pooled_text=True,
        image_size=SIZE,
    )
    return LatentDiffusion(config, autoencoder, tokenizer).eval()


def tiny_clip() -> CLIP:
    torch.manual_seed(1)
    vision = VisionEncoderConfig(image_size=SIZE, patch_size=8, width=16, num_layers=1, num_heads=2)
    return CLIP(CLIPConfig(embed_dim=12, vision=vision, text=TextEncoderConfig(width=16, num_heads=2))).eval()


def _train(ldm: LatentDiffusion, clip: CLIP):
    images = torch.rand(8, 3, SIZE, SIZE) * 2 - 1
    config = IPAdapterTrainConfig(steps=3, batch_size=4, warmup_steps=1, num_tokens=2)
    return train_ip_adapter(ldm, clip, images, PROMPTS * 4, config, progress=False), config


def test_only_the_adapter_trains():
    ldm, clip = tiny_ldm(), tiny_clip()
    before = {id(p): p.detach().clone() for p in ldm.parameters()}  # the names change when attn2 is wrapped
    (image_proj, history), _ = _train(ldm, clip)
    after = dict(ldm.named_parameters())
    assert all(torch.equal(p, before[id(p)]) for p in after.values() if id(p) in before)  # the LDM did not move
    new = {name: p for name, p in after.items() if id(p) not in before}
    assert new and all(name.endswith(("k_ip.weight", "v_ip.weight")) for name in new)
    originals = {name: after[name.replace("k_ip", "cross_attention.k_proj").replace("v_ip", "cross_attention.v_proj")]
                 for name in new}  # fmt: skip
    assert all(not torch.equal(p, originals[name]) for name, p in new.items()), "W'_K, W'_V start as W_K, W_V"
    assert len(history["loss"]) == 3 and image_proj.num_tokens == 2


def test_scale_zero_is_the_text_only_model_and_a_saved_adapter_samples_the_same(tmp_path):
    ldm, clip = tiny_ldm(), tiny_clip()
    sampler = make_sampler(ldm, "ddim", 4)
    text_only = text_to_image(ldm, sampler, PROMPTS, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    (image_proj, history), config = _train(ldm, clip)
    embeds = embed_images(clip, torch.rand(2, 3, SIZE, SIZE))
    generator = torch.Generator().manual_seed(0)
    off = image_prompt_to_image(ldm, image_proj, sampler, PROMPTS, embeds, 3.0, ip_scale=0.0, generator=generator)
    torch.testing.assert_close(off, text_only, rtol=0, atol=1e-6)
    on = image_prompt_to_image(
        ldm, image_proj, sampler, PROMPTS, embeds, 3.0, ip_scale=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert (on - text_only).abs().max() > 1e-4
    save_ip_adapter(ldm, image_proj, config, tmp_path / "ip.pt", history)
    fresh = tiny_ldm()
    loaded_proj, loaded_config = load_ip_adapter(fresh, tmp_path / "ip.pt")
    assert loaded_config == config
    again = image_prompt_to_image(
        fresh, loaded_proj, sampler, PROMPTS, embeds, 3.0, ip_scale=1.0, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(again, on, rtol=0, atol=1e-6)
    variations = image_variations(ldm, image_proj, sampler, embeds, 3.0, torch.Generator().manual_seed(0))
    assert variations.shape == (2, 3, SIZE, SIZE)
    with pytest.raises(CheckpointError, match="already has an IP-Adapter"):
        load_ip_adapter(fresh, tmp_path / "ip.pt")


def test_an_adapter_refuses_an_ldm_it_was_not_trained_on(tmp_path):
    ldm, clip = tiny_ldm(), tiny_clip()
    (image_proj, history), config = _train(ldm, clip)
    save_ip_adapter(ldm, image_proj, config, tmp_path / "ip.pt", history)
    assert adapter_fits(tiny_ldm(), tmp_path / "ip.pt")  # the same weights, without the adapter
    other = tiny_ldm()
    with torch.no_grad():
        next(other.unet.parameters()).view(-1)[0] += 1e-3
    assert not adapter_fits(other, tmp_path / "ip.pt")
    with pytest.raises(CheckpointError, match="trained on another LDM than this one"):
        load_ip_adapter(other, tmp_path / "ip.pt")
    # a file written before adapters carried their base's fingerprint still loads, but does not claim to fit
    legacy = {k: v for k, v in load_checkpoint(tmp_path / "ip.pt").items() if k != "base"}
    save_checkpoint(legacy, tmp_path / "legacy.pt")
    assert not adapter_fits(tiny_ldm(), tmp_path / "legacy.pt")
    load_ip_adapter(tiny_ldm(), tmp_path / "legacy.pt")


def test_condition_drops_have_their_probabilities():
    config = IPAdapterTrainConfig(drop_text_prob=0.1, drop_image_prob=0.2, drop_both_prob=0.3)
    r = (torch.arange(1000) + 0.5) / 1000  # evenly over [0, 1)
    drop_text, drop_image = condition_drops(r, config)
    assert drop_text.float().mean().item() == pytest.approx(0.4)  # text alone + both
    assert drop_image.float().mean().item() == pytest.approx(0.5)  # image alone + both
    assert (drop_text & drop_image).float().mean().item() == pytest.approx(0.3)


def test_mean_pairwise_distance_by_hand():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert mean_pairwise_distance(torch.cat([a, a])) == 0.0
    # pairs (a, b), (a, c), (b, c) with c = 1: RMS 0.5, 1.0, 0.5
    assert mean_pairwise_distance(torch.cat([a, b, torch.ones(1, 3, 2, 2)])) == pytest.approx(2 / 3)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="sum to <= 1"):
        IPAdapterTrainConfig(drop_text_prob=0.6, drop_image_prob=0.6)
    with pytest.raises(ValueError, match="K >= 2"):
        mean_pairwise_distance(torch.zeros(1, 3, 2, 2))
    ldm, clip = tiny_ldm(), tiny_clip()
    (image_proj, _), _ = _train(ldm, clip)
    with pytest.raises(ValueError, match="one image embedding"):
        image_prompt_to_image(ldm, image_proj, make_sampler(ldm, "ddim", 2), PROMPTS, torch.zeros(3, 12))
