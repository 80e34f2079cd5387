"""Build minildm's `CLIPTokenizer` from a transformers tokenizer folder (vocab.json + merges.txt).

A Stable Diffusion folder keeps CLIP's BPE tokenizer (Radford et al. 2021, sec. 2.4) in
transformers' layout:

    tokenizer/merges.txt            "#version: 0.2" then one merge per line, in rank order
    tokenizer/vocab.json            symbol -> id
    tokenizer/tokenizer_config.json model_max_length (77), pad_token (optional)

(transformers 5 saves both inside one tokenizer.json instead, read when the two files are absent.)

minildm rebuilds the tokenizer from the merges alone (`CLIPTokenizer.from_merges`): its
vocabulary is, in id order, 256 byte characters, the same with `</w>`, one symbol per merge,
then the start and end tokens. vocab.json must say exactly that, or the ids would differ from
the ones the text encoder was trained on; `load_hf_clip_tokenizer` checks it symbol by symbol.
transformers spells the special tokens `<|startoftext|>` / `<|endoftext|>`, minildm
`<start_of_text>` / `<end_of_text>` (same ids).

Padding: `CLIPTokenizer.__call__` pads with id 0, as OpenAI's `clip.tokenize`; Stable Diffusion's
pipelines pad with the folder's pad_token (`<|endoftext|>` in SD 1.x, `!` = id 0 in SD 2.x), and
the text encoder's hidden states at padded positions, which the U-Net reads, depend on it.
`pad_to_length` pads as the folder says.

Cleaning differs on some inputs: minildm cleans as OpenAI's CLIP (ftfy.fix_text, then HTML
unescaping); transformers' fast CLIPTokenizer only normalises to NFC. So "&amp;", curly quotes
and mojibake give different ids in the two; plain text gives the same.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from minildm.text.tokenizer import EOT_TOKEN, SOT_TOKEN, CLIPTokenizer
from minildm.text.vocab import read_merges

HF_SPECIAL_TOKENS = {SOT_TOKEN: "<|startoftext|>", EOT_TOKEN: "<|endoftext|>"}
NUM_BYTE_SYMBOLS = 2 * 256  # bytes, and bytes ending a word


@dataclass
class FolderTokenizer:
    """A CLIPTokenizer with the folder's context length and padding token."""

    tokenizer: CLIPTokenizer
    context_length: int  # tokenizer_config.json's model_max_length
    pad_token_id: int

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """Token ids (B, context_length): start, text (truncated as transformers does), end, pad_token_id."""
        tokens = self.tokenizer(texts, self.context_length, truncate=True)
        return pad_to_length(tokens, self.tokenizer.eot_token_id, self.pad_token_id)


def pad_to_length(tokens: torch.Tensor, eot_token_id: int, pad_token_id: int) -> torch.Tensor:
    """Replace the zero padding after each row's first end token (B, L) by pad_token_id."""
    end = (tokens == eot_token_id).int().argmax(dim=-1)  # (B,) first end token
    after_end = torch.arange(tokens.shape[1])[None, :] > end[:, None]  # (B, L)
    return tokens.masked_fill(after_end, pad_token_id)


def special_token(value) -> str:
    """A token as tokenizer_config.json stores it: a string, or an AddedToken dict with "content"."""
    return value["content"] if isinstance(value, dict) else value


def read_vocab_and_merges(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json + merges.txt (SD 1.x folders), or else the BPE model inside tokenizer.json
    (what transformers 5 writes); transformers, like CLIP, reads as many merges as the vocabulary has room for."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        return vocab, read_merges(folder / "merges.txt", max_merges=len(vocab) - NUM_BYTE_SYMBOLS - 2)
    if (folder / "tokenizer.json").is_file():
        model = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]
        if model.get("type") != "BPE" or model.get("end_of_word_suffix") != "</w>":
            raise ValueError(
                f"{folder}/tokenizer.json is not a CLIP BPE tokenizer (type BPE, end_of_word_suffix '</w>')"
            )
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return model["vocab"], merges[: len(model["vocab"]) - NUM_BYTE_SYMBOLS - 2]
    raise FileNotFoundError(f"tokenizer folder {folder} has no merges.txt and vocab.json (nor a tokenizer.json)")


def load_hf_clip_tokenizer(folder: str | Path) -> FolderTokenizer:
    """The tokenizer of a transformers CLIPTokenizer folder; ValueError if vocab.json disagrees with merges.txt."""
    folder = Path(folder)
    vocab, merges = read_vocab_and_merges(folder)
    tokenizer = CLIPTokenizer.from_merges(merges)
    ours = {HF_SPECIAL_TOKENS.get(symbol, symbol): i for symbol, i in tokenizer.encoder.items()}
    if ours != vocab:
        wrong = next((s for s in ours if vocab.get(s) != ours[s]), None) or next(s for s in vocab if s not in ours)
        raise ValueError(
            f"{folder}/vocab.json does not match merges.txt: {wrong!r} has id {vocab.get(wrong)} there, "
            f"{ours.get(wrong)} when built from the {len(merges)} merges"
        )

    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    pad_token = special_token(config.get("pad_token", "<|endoftext|>"))
    if pad_token not in vocab:
        raise ValueError(f"{config_path}: pad_token {pad_token!r} is not in vocab.json")
    return FolderTokenizer(tokenizer, int(config.get("model_max_length", 77)), vocab[pad_token])
