"""Text conditioning (LDM sec. 3.3): CLIP's BPE tokenizer, a BPE trainer, and a CLIP text encoder tau_theta."""

from minildm.text.bpe_trainer import train_bpe
from minildm.text.text_encoder import TextEncoder, TextEncoderConfig
from minildm.text.tokenizer import CLIPTokenizer
from minildm.text.vocab import (
    download_official_vocab,
    find_official_vocab,
    read_merges,
    write_merges,
)

__all__ = [
    "CLIPTokenizer",
    "TextEncoder",
    "TextEncoderConfig",
    "download_official_vocab",
    "find_official_vocab",
    "read_merges",
    "train_bpe",
    "write_merges",
]
