"""CLIP score (Hessel et al. 2021, "CLIPScore", sec. 3): how well an image matches a text, by a CLIP.

    CLIP-S(c, v) = w * max(cos(E_v, E_c), 0),   w = 100

E_v is the image embedding and E_c the text embedding of a CLIP (Hessel et al. use w = 2.5 with
ViT-B/32; text-to-image papers report w = 100, as torchmetrics' `CLIPScore` does, so 100 here).
Negative cosines are cut to 0: a mismatch scores 0 however dissimilar. The score of a set of
generated images is the mean over (image, prompt) pairs. It only means as much as the CLIP that
computes it: with minildm's own CLIP it measures agreement with what that CLIP learned from the
shapes captions, which is comparable between models scored by the same CLIP, not across CLIPs.
"""

import torch
import torch.nn.functional as F

from minildm.clip.model import CLIP
from minildm.text.tokenizer import CLIPTokenizer

CLIP_SCORE_WEIGHT = 100.0


def clip_score_from_embeddings(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """CLIP-S per pair (N,) = 100 * max(cos(image_embeds_i, text_embeds_i), 0), both (N, D), not normalised."""
    if image_embeds.dim() != 2 or image_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"image_embeds and text_embeds must both be (N, D) with row i a pair, "
            f"got {tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}"
        )
    cosine = F.cosine_similarity(image_embeds, text_embeds, dim=-1)  # (N,)
    # CLIP-S = w * max(cos, 0)
    return CLIP_SCORE_WEIGHT * cosine.clamp(min=0)


@torch.no_grad()
def clip_score(model: CLIP, tokenizer: CLIPTokenizer, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """CLIP-S of each (image, text) pair under `model`: images (N, 3, H, W) in [-1, 1], N texts -> (N,)."""
    if len(images) != len(texts):
        raise ValueError(f"need one text per image, got {len(images)} images and {len(texts)} texts")
    tokens = tokenizer(texts, context_length=model.text.config.context_length)
    return clip_score_from_embeddings(model.encode_image(images), model.encode_text(tokens))
