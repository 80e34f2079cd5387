"""CLIP's symmetric contrastive loss with a learned temperature (Radford et al. 2021, sec. 2.3, Fig. 3).

A batch holds B matching (image, text) pairs. Both towers' embeddings are L2-normalised, so their
dot products are cosine similarities, and scaled by a learned temperature:

    I_e = I / ||I||,   T_e = T / ||T||                     (B, D) each
    logits = exp(t) * I_e T_e^T                            (B, B): image i against text j
    loss = ( CE(logits, arange(B)) + CE(logits^T, arange(B)) ) / 2

Row i of `logits` is a B-way classification "which text goes with image i" whose answer is i; the
transpose asks "which image goes with text j". The diagonal pairs are pulled together and the
B^2 - B mismatched pairs in the same batch pushed apart, which is why CLIP wants large batches.

The temperature is learned as its log, t (so exp(t) > 0), initialised to 1/0.07 and clipped so
that it never scales the logits by more than 100 (sec. 2.5): here exp(t) is clamped at 100.
The value matches open_clip's `ClipLoss(I_e, T_e, exp(t))` whenever exp(t) <= 100.
"""

import math

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0  # CLIP's clip on exp(t)
INIT_LOGIT_SCALE = math.log(1 / 0.07)  # t at initialisation: temperature 0.07


def clip_logits(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Scaled cosine similarities (B_img, B_txt) of image_embeds (B_img, D) and text_embeds (B_txt, D);
    logit_scale is the learned log temperature t, a scalar tensor."""
    if image_embeds.dim() != 2 or text_embeds.dim() != 2 or image_embeds.shape[1] != text_embeds.shape[1]:
        raise ValueError(
            f"image_embeds and text_embeds must be (B, D) with the same D, "
            f"got {tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}"
        )
    if logit_scale.numel() != 1:
        raise ValueError(
            f"logit_scale must be one number (the log temperature t), got shape {tuple(logit_scale.shape)}"
        )
    # I_e = I / ||I||, T_e = T / ||T||
    image_embeds = F.normalize(image_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    # logits = min(exp(t), 100) * I_e T_e^T
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    return scale * image_embeds @ text_embeds.T  # (B_img, B_txt)


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """The symmetric contrastive loss of B matching pairs: image_embeds and text_embeds (B, D), row i with row i."""
    if image_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"need as many texts as images (row i matches row i), "
            f"got {image_embeds.shape[0]} and {text_embeds.shape[0]}"
        )
    logits_per_image = clip_logits(image_embeds, text_embeds, logit_scale)  # (B, B)
    labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)  # pair i is the answer to row i
    # loss = (CE(logits, labels) + CE(logits^T, labels)) / 2
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)) / 2
