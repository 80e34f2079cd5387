"""The CLIP model and its training: shapes, the temperature at 1/0.07, weight decay groups, a loss
that falls on a tiny set of pairs, and the zero-shot prompts."""

import math

import pytest
import torch

from minildm.clip.evaluate import class_prompts, text_to_image_recall_at_1
from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.train import CLIPTrainConfig, parameter_groups, train_clip
from minildm.clip.vision import VisionEncoderConfig
from minildm.datasets.attributes import COLOURS, POSITIONS, SHAPES
from minildm.text.text_encoder import TextEncoderConfig

TINY = CLIPConfig(
    embed_dim=16,
    vision=VisionEncoderConfig(image_size=16, patch_size=8, width=32, num_layers=1, num_heads=2),
    text=TextEncoderConfig(context_length=10, width=32, num_layers=1, num_heads=2),
)


def _pairs() -> tuple[torch.Tensor, list[str]]:
    """Eight images, a small or a large square of one of four colours in the centre, and their captions.

    (Not squares in different corners: with one patch per corner, the class token's first
    attention is uniform, blind to where a patch sits, and a model this small waits at loss
    log 4 for many steps before it reads position; the shapes run learns position.)"""
    colours = {
        "red": (1.0, -1.0, -1.0),
        "green": (-1.0, 1.0, -1.0),
        "blue": (-1.0, -1.0, 1.0),
        "white": (1.0, 1.0, 1.0),
    }
    sizes = {"small": 2, "large": 6}
    images, captions = [], []
    for colour, rgb in colours.items():
        for size, half in sizes.items():
            image = -torch.ones(3, 16, 16)
            image[:, 8 - half : 8 + half, 8 - half : 8 + half] = torch.tensor(rgb)[:, None, None]
            images.append(image)
            captions.append(f"a {size} {colour} square")
    return torch.stack(images), captions


def test_logits_shape_and_initial_temperature():
    model = CLIP(TINY)
    assert math.isclose(model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-6)
    logits = model(torch.zeros(3, 3, 16, 16), torch.tensor([[5, 7, 9, 0], [5, 9, 0, 0]]))
    assert logits.shape == (3, 2)
    with pytest.raises(ValueError, match="projection_dim"):
        CLIPConfig(embed_dim=16, vision=VisionEncoderConfig(projection_dim=8))


def test_weight_decay_only_on_weight_matrices():
    model = CLIP(TINY)
    decay, rest = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "vision.blocks.0.attn.q_proj.weight" in decayed and "vision.patch_embedding.weight" in decayed
    kept = {names[id(p)] for p in rest["params"]}
    assert {"logit_scale", "vision.class_embedding", "text.token_embedding.weight", "vision.ln_pre.weight"} <= kept
    assert len(decayed) + len(kept) == len(names)


def test_training_learns_the_tiny_pairs():
    images, captions = _pairs()
    config = CLIPTrainConfig(
        clip=TINY, steps=100, batch_size=8, lr=1e-3, weight_decay=0.0, warmup_steps=5, tokenizer_merges=30
    )
    model, tokenizer, history = train_clip(config, images, captions, progress=False)
    assert sum(history["loss"][-5:]) / 5 < 0.5 * history["loss"][0]
    assert text_to_image_recall_at_1(model, tokenizer, images, captions, pool_size=8) == 1.0


def test_zero_shot_prompts():
    one = class_prompts("colour", ensemble=False)
    assert one[COLOURS.index("blue")] == ["a photo of a blue shape"]
    ensemble = class_prompts("position", ensemble=True)
    assert len(ensemble) == len(POSITIONS) and all(len(p) == len(SHAPES) * len(COLOURS) * 2 for p in ensemble)
    assert all(text.endswith("at the top left") for text in ensemble[0])
    with pytest.raises(ValueError, match="attribute must be one of"):
        class_prompts("size", ensemble=False)
