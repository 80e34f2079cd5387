"""CLIP (Radford et al. 2021): a vision transformer and the text encoder trained contrastively on
image-caption pairs, zero-shot evaluation, and CLIP score (Hessel et al. 2021).

What uses a trained CLIP sits beside it: checkpoint.py (save, load, the shared cache), tradeoff.py
(the guidance trade-off curve, FD against CLIP score), image_prompt.py (sampling with an IP-Adapter's
image prompt, image variations; the adapter's training is minildm/train/ip_adapter.py) and
frozen_text.py (its text tower as the LDM's frozen tau_theta). Those import the LDM, so they are
imported from their modules, not from here."""

from minildm.clip.evaluate import text_to_image_recall_at_1, zero_shot_accuracy
from minildm.clip.loss import clip_logits, clip_loss
from minildm.clip.model import CLIP, CLIPConfig
from minildm.clip.score import clip_score, clip_score_from_embeddings
from minildm.clip.train import CLIPTrainConfig, train_clip
from minildm.clip.vision import VisionEncoder, VisionEncoderConfig

__all__ = [
    "CLIP",
    "CLIPConfig",
    "CLIPTrainConfig",
    "VisionEncoder",
    "VisionEncoderConfig",
    "clip_logits",
    "clip_loss",
    "clip_score",
    "clip_score_from_embeddings",
    "text_to_image_recall_at_1",
    "train_clip",
    "zero_shot_accuracy",
]
