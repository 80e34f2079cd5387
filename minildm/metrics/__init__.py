"""Metrics that judge samples offline: Frechet distance, PSNR/SSIM, caption-match accuracy."""

from minildm.metrics.caption_match import (
    caption_match_accuracy,
    drawn_colours,
    drawn_shapes,
    load_or_train_shapes_classifier,
)
from minildm.metrics.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
    head_accuracy,
    train_attribute_classifier,
)
from minildm.metrics.frechet import frechet_distance, frechet_with_floor, sqrtm_psd
from minildm.metrics.image_quality import psnr, psnr_per_image, ssim, ssim_per_image
from minildm.metrics.mnist_judge import load_or_train_mnist_classifier

__all__ = [
    "AttributeClassifier",
    "ClassifierConfig",
    "ClassifierTrainConfig",
    "caption_match_accuracy",
    "drawn_colours",
    "drawn_shapes",
    "frechet_distance",
    "frechet_with_floor",
    "head_accuracy",
    "load_or_train_mnist_classifier",
    "load_or_train_shapes_classifier",
    "psnr",
    "psnr_per_image",
    "sqrtm_psd",
    "ssim",
    "ssim_per_image",
    "train_attribute_classifier",
]
