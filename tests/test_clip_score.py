"""CLIP score (Hessel et al. 2021): the formula 100 * max(cos, 0), by hand and through our CLIP."""

import math

import pytest
import torch
import torch.nn.functional as F

from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.score import clip_score, clip_score_from_embeddings
from minildm.clip.vision import VisionEncoderConfig
from minildm.text.bpe_trainer import train_bpe
from minildm.text.text_encoder import TextEncoderConfig
from minildm.text.tokenizer import CLIPTokenizer


def test_formula_by_hand():
    """Angles 0, 60, 90 and 120 degrees: 100, 50, 0 and 0 (a negative cosine is cut to 0); lengths do not count."""
    images = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    angles = torch.tensor([0.0, 60.0, 0.0, 120.0]) * math.pi / 180
    texts = 5 * torch.stack([angles.cos(), angles.sin()], dim=1)  # text i at angle_i from the x axis
    torch.testing.assert_close(clip_score_from_embeddings(images, texts), torch.tensor([100.0, 50.0, 0.0, 0.0]))


def test_matches_the_cosine_of_random_embeddings():
    torch.manual_seed(0)
    images, texts = torch.randn(20, 8, dtype=torch.float64), torch.randn(20, 8, dtype=torch.float64)
    cosines = (F.normalize(images, dim=-1) * F.normalize(texts, dim=-1)).sum(-1)
    expected = 100 * torch.where(cosines > 0, cosines, torch.zeros_like(cosines))
    torch.testing.assert_close(clip_score_from_embeddings(images, texts), expected)
    assert (cosines < 0).any() and (cosines > 0).any()


def test_clip_score_with_our_clip_is_the_formula_on_its_embeddings():
    captions = ["a red circle", "a blue square", "a green triangle"]
    tokenizer = CLIPTokenizer.from_merges(train_bpe(captions, 20))
    torch.manual_seed(1)
    model = CLIP(
        CLIPConfig(
            embed_dim=8,
            vision=VisionEncoderConfig(image_size=16, patch_size=8, width=16, num_layers=1, num_heads=2),
            text=TextEncoderConfig(
                vocab_size=tokenizer.vocab_size, context_length=8, width=16, num_layers=1, num_heads=2
            ),
        )
    ).eval()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        image_embeds = model.encode_image(images)
        text_embeds = model.encode_text(tokenizer(captions, context_length=8))
    torch.testing.assert_close(
        clip_score(model, tokenizer, images, captions), clip_score_from_embeddings(image_embeds, text_embeds)
    )
    with pytest.raises(ValueError, match="one text per image"):
        clip_score(model, tokenizer, images, captions[:2])


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="row i a pair"):
        clip_score_from_embeddings(torch.zeros(3, 4), torch.zeros(2, 4))
