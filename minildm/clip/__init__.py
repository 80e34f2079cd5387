"""CLIP (Radford et al. 2021): a vision transformer and the text encoder trained contrastively on
image-caption pairs, zero-shot evaluation, and CLIP score (Hessel et al. 2021)."""

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
