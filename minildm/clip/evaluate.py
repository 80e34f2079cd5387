"""Measuring a CLIP: zero-shot attribute classification and text-to-image retrieval (Radford et al. 2021, sec. 3.1).

Zero-shot classification (sec. 3.1.2): the classifier's weights are text embeddings. For each class
c (a colour, a shape or a position) embed a prompt naming it, and label an image with the class
whose prompt is the most similar:

    w_c = T_e(prompt_c) / ||T_e(prompt_c)||                 (C, D)
    prediction(x) = argmax_c cos(I_e(x), w_c)

Two ways to write prompt_c:
- one template per attribute, "a photo of a {colour} shape" style (sec. 3.1.4): it names only the
  attribute asked about, in words the captions never used ("photo", "shape");
- prompt ensembling (sec. 3.1.4): w_c is the normalised mean of the normalised embeddings of every
  canonical caption `prompt_for(shape, colour, size, position)` that names class c, the other
  attributes running over all their values.

Text-to-image retrieval: for each caption, rank the images of a pool by cos(T_e, I_e); recall@1 is
the fraction of captions whose own image comes first.
"""

import itertools

import torch
import torch.nn.functional as F

from minildm.clip.model import CLIP
from minildm.datasets.attributes import COLOURS, POSITIONS, SHAPES, SIZES
from minildm.datasets.captions import COLOUR_WORDS, POSITION_WORDS, SHAPE_WORDS, prompt_for
from minildm.text.tokenizer import CLIPTokenizer

# attribute -> (its column in ShapesDataset.labels, its class names, the one-template prompt)
ZERO_SHOT_ATTRIBUTES = {
    "shape": (0, SHAPES, lambda name: f"a photo of a {SHAPE_WORDS[name][0]}"),
    "colour": (1, COLOURS, lambda name: f"a photo of a {COLOUR_WORDS[name][0]} shape"),
    "position": (3, POSITIONS, lambda name: f"a photo of a shape {POSITION_WORDS[name][0]}"),
}


@torch.no_grad()
def embed_texts(model: CLIP, tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """T_e for each text, normalised (N, D)."""
    tokens = tokenizer(texts, context_length=model.text.config.context_length)
    return F.normalize(model.encode_text(tokens), dim=-1)


@torch.no_grad()
def embed_images(model: CLIP, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """I_e for each image (N, 3, H, W), normalised (N, D)."""
    return torch.cat(
        [F.normalize(model.encode_image(images[i : i + batch_size]), dim=-1) for i in range(0, len(images), batch_size)]
    )


def class_prompts(attribute: str, ensemble: bool) -> list[list[str]]:
    """For each class of `attribute`, its prompts: the one template, or every canonical caption naming it."""
    if attribute not in ZERO_SHOT_ATTRIBUTES:
        raise ValueError(f"attribute must be one of {tuple(ZERO_SHOT_ATTRIBUTES)}, got {attribute!r}")
    _, classes, template = ZERO_SHOT_ATTRIBUTES[attribute]
    if not ensemble:
        return [[template(name)] for name in classes]
    every = list(itertools.product(SHAPES, COLOURS, SIZES, POSITIONS))
    column = {"shape": 0, "colour": 1, "position": 3}[attribute]
    return [[prompt_for(*row) for row in every if row[column] == name] for name in classes]


def zero_shot_classifier(model: CLIP, tokenizer: CLIPTokenizer, prompts: list[list[str]]) -> torch.Tensor:
    """w_c (C, D): the normalised mean of the normalised embeddings of class c's prompts."""
    return F.normalize(torch.stack([embed_texts(model, tokenizer, texts).mean(dim=0) for texts in prompts]), dim=-1)


def zero_shot_accuracy(
    model: CLIP, tokenizer: CLIPTokenizer, images: torch.Tensor, labels: torch.Tensor, attribute: str, ensemble: bool
) -> float:
    """Fraction of images (N, 3, H, W) whose `attribute` (labels (N, 4) as ShapesDataset) is read right zero-shot."""
    weights = zero_shot_classifier(model, tokenizer, class_prompts(attribute, ensemble))  # (C, D)
    # prediction(x) = argmax_c cos(I_e(x), w_c)
    predictions = (embed_images(model, images) @ weights.T).argmax(dim=-1)  # (N,)
    column = ZERO_SHOT_ATTRIBUTES[attribute][0]
    return (predictions == labels[:, column]).float().mean().item()


def text_to_image_recall_at_1(
    model: CLIP, tokenizer: CLIPTokenizer, images: torch.Tensor, captions: list[str], pool_size: int = 100
) -> float:
    """Recall@1 of text-to-image retrieval: caption i against the images of its pool of `pool_size`
    consecutive pairs (chance 1 / pool_size), averaged over the N // pool_size whole pools."""
    if len(images) != len(captions) or len(images) < pool_size:
        raise ValueError(
            f"need N >= pool_size={pool_size} images and N captions, got {len(images)} and {len(captions)}"
        )
    hits = []
    for start in range(0, len(images) - pool_size + 1, pool_size):
        image_embeds = embed_images(model, images[start : start + pool_size])  # (P, D)
        text_embeds = embed_texts(model, tokenizer, captions[start : start + pool_size])  # (P, D)
        # caption i retrieves argmax_j cos(T_e_i, I_e_j)
        retrieved = (text_embeds @ image_embeds.T).argmax(dim=-1)  # (P,)
        hits.append(retrieved == torch.arange(pool_size))
    return torch.cat(hits).float().mean().item()
