"""CLIP's byte-level BPE tokenizer, from scratch (Radford et al. 2021, sec. 2.4; Sennrich et al. 2016).

Stable Diffusion reads a prompt y through this tokenizer before the text encoder tau_theta(y)
(LDM sec. 3.3). A prompt becomes token ids in five steps:

1. clean:        ftfy.fix_text, HTML-unescape (twice), collapse whitespace, lower-case.
2. pre-tokenize: a regex cuts the text into words: contractions ('s 't 're 've 'm 'll 'd),
                 runs of letters, single digits, runs of other symbols. Spaces are dropped.
3. bytes:        each word's UTF-8 bytes become printable characters (`bytes_to_unicode`), so
                 every string, emoji and control characters included, has a spelling.
4. merges:       the word starts as single characters, the last one marked with `</w>` (end of
                 word); then the adjacent pair of lowest rank in the merges list is joined,
                 everywhere in the word, until no adjacent pair is in the list (`bpe.py`).
5. ids:          each resulting symbol is looked up in the vocabulary.

`__call__` adds the start token and the end token and pads with zeros to `context_length`.

Equal to open_clip's `SimpleTokenizer` (default `clean="lower"`, which cleans exactly as OpenAI's
`clip.tokenize` does): tests/test_tokenizer_parity.py checks ids, decoded text and padded batches.
Differences from OpenAI's `clip.tokenize`: the special tokens are spelled `<start_of_text>` /
`<end_of_text>` as in open_clip (OpenAI: `<|startoftext|>` / `<|endoftext|>`; the ids 49406 / 49407
are the same; in all three, that spelling typed inside a prompt is read as the special token).
Too long a text raises an error unless `truncate=True`, as in OpenAI's (open_clip always
truncates); truncation keeps the end token last, as in both.
"""

import html
import operator
from collections.abc import Iterable, Sequence
from pathlib import Path

import ftfy
import regex
import torch

from minildm.text.bpe import END_OF_WORD, apply_merges, merge_steps, word_to_symbols
from minildm.text.vocab import official_vocab_path, read_merges

SOT_TOKEN, EOT_TOKEN = "<start_of_text>", "<end_of_text>"
CACHE_SIZE = 100_000  # words whose merges are remembered
# __call__ allocates (N, context_length) int64 before reading any text, so 10**9 would ask for 8 GB a
# prompt. CLIP reads 77 tokens and diffusion text encoders at most a few hundred (T5 in SD3: 256,
# Flux: 512); 4096 is 8x the longest of those, and a batch of 1,000 prompts stays at 32 MB.
MAX_CONTEXT_LENGTH = 4096
# contractions | runs of letters | one digit | runs of anything but space, letters and digits
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# the special tokens first, so that they stay whole; IGNORECASE as in CLIP
PRE_TOKENIZER = regex.compile(f"{SOT_TOKEN}|{EOT_TOKEN}|{WORD_PATTERN}", regex.IGNORECASE)


def bytes_to_unicode() -> dict[int, str]:
    """A printable character for each of the 256 byte values.

    The 188 bytes that are already printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
    themselves; the other 68 (space, control characters, ...) are shifted to chr(256 + n).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = [b for b in range(256) if b not in table]
    for n, b in enumerate(shifted):
        table[b] = chr(256 + n)
    return table  # printable bytes first, then the shifted ones: this order is the vocabulary's


def clean_text(text: str) -> str:
    """Step 1: fix mojibake, unescape HTML (twice, for `&amp;amp;`), collapse whitespace, lower-case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


def check_text(text: object, name: str) -> None:
    """A TypeError unless `text` is a str (None, bytes, numbers and dicts are not text)."""
    if not isinstance(text, str):
        hint = ": decode bytes first, e.g. text.decode('utf-8')" if isinstance(text, bytes) else ""
        raise TypeError(f"{name} must be a str, got {type(text).__name__}{hint}")


def pre_tokenize(text: str) -> list[str]:
    """Step 2 on cleaned text: the words BPE works on (the special tokens kept whole)."""
    return PRE_TOKENIZER.findall(text)


class CLIPTokenizer:
    """CLIP's tokenizer for a merges list: the official one, a file, or one `train_bpe` learned.

    vocab_path: a merges file; None finds the official vocabulary (see `minildm.text.vocab`),
    downloading it (checked by SHA-256) only if `download=True`. `from_merges(merges)` builds one
    from a list of merges. Vocabulary, in id order: 256 byte characters, the same 256 with `</w>`,
    one symbol per merge, `<start_of_text>`, `<end_of_text>`.
    """

    def __init__(self, vocab_path: str | Path | None = None, download: bool = False):
        path = Path(vocab_path) if vocab_path is not None else official_vocab_path(download)
        self._build(read_merges(path))

    @classmethod
    def from_merges(cls, merges: list[tuple[str, str]]) -> "CLIPTokenizer":
        tokenizer = cls.__new__(cls)
        tokenizer._build([tuple(m) for m in merges])
        return tokenizer

    def _build(self, merges: list[tuple[str, str]]) -> None:
        for merge in merges:
            if len(merge) != 2 or not all(isinstance(s, str) and s for s in merge):
                raise ValueError(f"a merge is a pair of non-empty strings, got {merge!r}")
        self.merges = merges
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        base = list(self.byte_encoder.values())
        self.vocab = base + [c + END_OF_WORD for c in base] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
        # as in CLIP, a symbol that two merges spell alike keeps the later id
        self.encoder = {symbol: i for i, symbol in enumerate(self.vocab)}
        self.bpe_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.cache: dict[str, tuple[str, ...]] = {}  # word -> its symbols, emptied when full

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def sot_token_id(self) -> int:
        return len(self.vocab) - 2

    @property
    def eot_token_id(self) -> int:
        return len(self.vocab) - 1

    def byte_encode(self, word: str) -> str:
        """Step 3: the word's UTF-8 bytes as printable characters."""
        return "".join(self.byte_encoder[b] for b in word.encode("utf-8"))

    def bpe(self, word: str) -> tuple[str, ...]:
        """Step 4: apply the merges to one byte-encoded word, lowest rank first."""
        if word in (SOT_TOKEN, EOT_TOKEN):
            return (word,)
        if word in self.cache:
            return self.cache[word]
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()
        symbols = apply_merges(word_to_symbols(word), self.bpe_ranks)
        self.cache[word] = symbols
        return symbols

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without start and end tokens."""
        check_text(text, "text")
        return [self.encoder[s] for word in pre_tokenize(clean_text(text)) for s in self.bpe(self.byte_encode(word))]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of token ids (a list or a 1-D tensor); `</w>` becomes a space. An id that is not an
        integer in [0, vocab_size) is an error (a negative one would otherwise count from the end)."""
        if isinstance(ids, torch.Tensor) and ids.ndim != 1:
            raise ValueError(
                f"decode takes a 1-D sequence of token ids, got a tensor of shape {tuple(ids.shape)}: decode each row"
            )
        if isinstance(ids, (str, bytes, dict)) or not isinstance(ids, Iterable):
            raise TypeError(f"decode takes a list or a 1-D tensor of token ids, got {type(ids).__name__}")
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        for position, token in enumerate(values):
            try:
                token_id = operator.index(token)
            except TypeError:
                raise TypeError(
                    f"decode takes integer token ids, got {type(token).__name__} {token!r} at position {position}"
                ) from None
            if not 0 <= token_id < len(self.vocab):
                raise ValueError(
                    f"token id {token_id} at position {position} is outside the vocabulary [0, {len(self.vocab)})"
                )
        symbols = "".join(self.vocab[operator.index(token)] for token in values)
        text = bytes(self.byte_decoder[c] for c in symbols).decode("utf-8", errors="replace")
        return text.replace(END_OF_WORD, " ")

    def encode_and_show_work(self, text: str) -> dict:
        """Every stage of `encode`, for teaching: cleaned text, words, bytes, merges, symbols, ids."""
        check_text(text, "text")
        cleaned = clean_text(text)
        words = pre_tokenize(cleaned)
        byte_words = [self.byte_encode(w) for w in words]
        steps = []
        for word in byte_words:
            start = (word,) if word in (SOT_TOKEN, EOT_TOKEN) else word_to_symbols(word)
            steps.append({"start": start, "steps": merge_steps(start, self.bpe_ranks)})
        symbols = [s for w in byte_words for s in self.bpe(w)]
        return {
            "text": text,
            "cleaned": cleaned,
            "words": words,
            "byte_words": byte_words,
            "merges": steps,
            "symbols": symbols,
            "ids": [self.encoder[s] for s in symbols],
        }

    def __call__(
        self, texts: str | list[str] | tuple[str, ...], context_length: int = 77, truncate: bool = False
    ) -> torch.Tensor:
        """Token ids (N, context_length): start token, text, end token, zeros (like `clip.tokenize`).

        A text longer than context_length - 2 tokens raises ValueError, unless `truncate`: then it is
        cut to context_length tokens, the last of which is set to the end token.
        """
        if isinstance(texts, str):
            texts = [texts]
        elif isinstance(texts, (list, tuple)):
            for row, text in enumerate(texts):
                check_text(text, f"texts[{row}]")
        else:
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        if isinstance(context_length, bool) or not isinstance(context_length, int):
            raise TypeError(f"context_length must be an int, got {type(context_length).__name__} {context_length!r}")
        if context_length < 2:
            raise ValueError(f"context_length must hold the start and end tokens (>= 2), got {context_length}")
        if context_length > MAX_CONTEXT_LENGTH:
            raise ValueError(
                f"context_length must be at most {MAX_CONTEXT_LENGTH} (CLIP reads 77), got {context_length}"
            )
        tokens = torch.zeros(len(texts), context_length, dtype=torch.long)  # (N, context_length)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > context_length:
                if not truncate:
                    raise ValueError(
                        f"text {row} is {len(ids)} tokens long with start and end tokens, more than "
                        f"context_length={context_length}: shorten it or pass truncate=True ({text[:60]!r}...)"
                    )
                ids = ids[:context_length]
                ids[-1] = self.eot_token_id
            tokens[row, : len(ids)] = torch.tensor(ids)
        return tokens
