"""A CLIP saved and loaded gives the same embeddings; the shared cache trains once; cutting each
training batch's padding after its longest caption changes nothing the text tower computes."""

import pytest
import torch

from minildm.checkpoint import CheckpointError, save_checkpoint
from minildm.clip.checkpoint import load_clip, load_or_train_shapes_clip, save_clip
from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.train import CLIPTrainConfig
from minildm.clip.vision import VisionEncoderConfig
from minildm.text.text_encoder import TextEncoderConfig
from minildm.text.tokenizer import CLIPTokenizer

TINY = CLIPConfig(
    embed_dim=8,
    vision=VisionEncoderConfig(image_size=16, patch_size=8, width=16, num_layers=1, num_heads=2),
    text=TextEncoderConfig(vocab_size=600, context_length=77, width=16, num_layers=1, num_heads=2),
)


def test_save_and_load_give_the_same_embeddings(tmp_path):
    torch.manual_seed(0)
    model = CLIP(TINY).eval()
    tokenizer = CLIPTokenizer.from_merges([("r", "e"), ("re", "d</w>")])
    save_clip(model, tokenizer, tmp_path / "clip.pt", {"loss": [1.0]})
    loaded, loaded_tokenizer, history = load_clip(tmp_path / "clip.pt")
    tokens = tokenizer(["a red circle"], context_length=77)
    assert torch.equal(loaded_tokenizer(["a red circle"], context_length=77), tokens)
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded.encode_image(images), model.encode_image(images), rtol=0, atol=0)
    torch.testing.assert_close(loaded.encode_text(tokens), model.encode_text(tokens), rtol=0, atol=0)
    assert history == {"loss": [1.0]}


def test_loading_something_else_is_refused(tmp_path):
    save_checkpoint({"kind": "minildm.LatentDiffusion", "config": {}, "tokenizer": {}, "model": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="expected a CLIP"):
        load_clip(tmp_path / "x.pt")


def test_the_cache_trains_once_and_retrains_for_other_settings(tmp_path, capsys):
    config = CLIPTrainConfig(clip=TINY, steps=2, batch_size=4, warmup_steps=1, tokenizer_merges=20)
    path = tmp_path / "clip.pt"
    first, _, history = load_or_train_shapes_clip(path, config, num_train=8)
    assert "trained" in capsys.readouterr().out and history["num_train"] == 8
    again, _, _ = load_or_train_shapes_clip(path, config, num_train=8)
    assert "loaded" in capsys.readouterr().out
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    load_or_train_shapes_clip(path, CLIPTrainConfig(**{**config.__dict__, "steps": 3}), num_train=8)
    assert "other settings" in capsys.readouterr().out


def test_cutting_the_padding_after_the_longest_caption_is_exact():
    torch.manual_seed(0)
    model = CLIP(TINY).eval()
    tokenizer = CLIPTokenizer.from_merges([])
    tokens = tokenizer(["a red circle", "a big blue square on the left"], context_length=77)  # (2, 77)
    longest = int(model.text.pool_positions(tokens).max()) + 1
    assert longest < 77
    torch.testing.assert_close(model.encode_text(tokens[:, :longest]), model.encode_text(tokens), rtol=0, atol=1e-6)
