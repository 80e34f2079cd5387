"""CLIP (Radford et al. 2021): a vision transformer and the text encoder trained contrastively, and CLIP score."""

from minildm.clip.vision import VisionEncoder, VisionEncoderConfig

__all__ = ["VisionEncoder", "VisionEncoderConfig"]
