"""The LDM with our CLIP's text tower frozen as tau_theta: the context is the CLIP's hidden states,
the tower never moves in training, the U-Net does, and the checkpoint loads back."""

import dataclasses

import pytest
import torch

from minildm.autoencoder import build_autoencoder
from minildm.clip.frozen_text import frozen_clip_text_ldm, train_frozen_text_ldm
from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.vision import VisionEncoderConfig
from minildm.config import preset
from minildm.ldm import load_ldm
from minildm.text import CLIPTokenizer, TextEncoderConfig


def _clip_and_tokenizer() -> tuple[CLIP, CLIPTokenizer]:
    tokenizer = CLIPTokenizer.from_merges([])
    torch.manual_seed(3)
    config = CLIPConfig(
        embed_dim=8,
        vision=VisionEncoderConfig(image_size=32, patch_size=16, width=16, num_layers=1, num_heads=2),
        text=TextEncoderConfig(vocab_size=tokenizer.vocab_size, context_length=77, width=24, num_layers=1, num_heads=2),
    )
    return CLIP(config).eval(), tokenizer


def test_the_context_is_the_clip_text_towers_and_only_the_unet_trains(tmp_path):
    config = dataclasses.replace(preset("quick"), progress=False)
    clip, tokenizer = _clip_and_tokenizer()
    autoencoder = build_autoencoder(config.autoencoder)
    ldm = frozen_clip_text_ldm(config, autoencoder, clip, tokenizer)
    assert ldm.config.unet.context_dim == 24 and ldm.text_encoder.text_projection is None
    tokens = ldm.tokenize(["a red circle at the top"])
    hidden, pooled = clip.text(tokens)
    context = ldm.encode_condition(["a red circle at the top"])
    torch.testing.assert_close(context.context, hidden, rtol=0, atol=0)
    assert not any(p.requires_grad for p in ldm.text_encoder.parameters())
    before_text = {k: v.clone() for k, v in ldm.text_encoder.state_dict().items()}
    trained, _ = train_frozen_text_ldm(config, autoencoder, clip, tokenizer, "cpu", tmp_path, overwrite=True)
    after_text = trained.text_encoder.state_dict()
    assert all(torch.equal(before_text[k], after_text[k]) for k in before_text)
    loaded = load_ldm(tmp_path / "ldm.pt")  # with its EMA, which holds only the U-Net
    for name, value in loaded.text_encoder.state_dict().items():
        torch.testing.assert_close(value, clip.text.state_dict()[name], rtol=0, atol=0)
    untrained = frozen_clip_text_ldm(config, autoencoder, clip, tokenizer).unet.state_dict()
    assert any(not torch.equal(value, untrained[name]) for name, value in loaded.unet.state_dict().items())


def test_a_tokenizer_of_another_vocabulary_is_refused():
    config = preset("quick")
    clip, _ = _clip_and_tokenizer()
    other = CLIPTokenizer.from_merges([("a", "b")])
    with pytest.raises(ValueError, match="the tokenizer must be the CLIP's"):
        frozen_clip_text_ldm(config, build_autoencoder(config.autoencoder), clip, other)
