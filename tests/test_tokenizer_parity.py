"""minildm's CLIPTokenizer gives exactly the ids and the decoded text of open_clip's SimpleTokenizer
(default clean="lower") on the official vocabulary, on a deterministic corpus of varied strings,
and on any string hypothesis can think of."""

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from open_clip.tokenizer import SimpleTokenizer

from minildm.text import CLIPTokenizer
from minildm.text.bpe import apply_merges, merge_steps, word_to_symbols

WORDS = [
    "a",
    "the",
    "small",
    "large",
    "tiny",
    "big",
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "circle",
    "square",
    "triangle",
    "star",
    "at",
    "on",
    "of",
    "top",
    "bottom",
    "left",
    "right",
    "middle",
    "center",
    "next",
    "to",
    "above",
    "below",
    "photo",
    "painting",
]
ODD = [
    "😀",
    "👩‍👩‍👧‍👦",
    "🇫🇷",
    "日本語",
    "中文字符",
    "한국어",
    "Ελληνικά",
    "русский",
    "العربية",
    "עברית",
    "हिन्दी",
    "ไทย",
    "e\u0301",
    "a\u0308\u0308",
    "\u200b",
    "\u200d",
    "\ufeff",
    "\x00",
    "\x07",
    "\x1b[31m",
    "\r\n",
    "\t",
    "\u2028",
    "\u00a0",
    "Ã©",
    "â€™",
    "Ã¼ber",
    "&amp;",
    "&lt;b&gt;",
    "&amp;amp;",
    "&#39;",
    "&nbsp;",
    "&eacute;",
    "ﬁ",
    "Ⅻ",
    "²",
    "½",
    "٣",
    "𝔘𝔫𝔦",
    "İstanbul",
    "ß",
    "ǅ",
    "<start_of_text>",
    "<end_of_text>",
    "<|endoftext|>",
    "</w>",
    "'S",
    "'LL",
    "''",
]
PUNCT = list("!?.,;:-_()[]{}<>/\\|@#$%^&*+=~`\"'") + ["...", "--", "?!", "©", "®", "™", "°", "€", "£", "¥"]
CONTRACTIONS = ["it's", "don't", "they're", "we've", "i'm", "you'll", "he'd", "IT'S", "rock'n'roll", "o'clock"]


def _corpus() -> list[str]:
    """1,200 deterministic strings from eight generators (captions, punctuation, numbers, ...)."""
    rng = random.Random(1234)

    def word() -> str:
        return rng.choice(WORDS)

    generators = [
        lambda: " ".join(word() for _ in range(rng.randint(1, 12))),
        lambda: " ".join(word().upper() if rng.random() < 0.3 else word() for _ in range(5)) + rng.choice(PUNCT),
        lambda: (
            f"{rng.randint(0, 10 ** rng.randint(1, 9))} {word()}s, {rng.random():.4f}% "
            f"at {rng.randint(0, 23)}:{rng.randint(0, 59):02d}"
        ),
        lambda: " ".join(rng.choice(CONTRACTIONS + WORDS) for _ in range(rng.randint(1, 8))),
        lambda: "".join(rng.choice(ODD + WORDS + PUNCT + [" ", ""]) for _ in range(rng.randint(1, 15))),
        lambda: "".join(chr(rng.randint(0, 0x2FFFF)) for _ in range(rng.randint(1, 20))),
        lambda: "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 20))),
        lambda: " ".join(word() for _ in range(rng.randint(60, 150))),  # longer than 77 tokens
    ]
    return [generators[i % len(generators)]() for i in range(1200)]


CORPUS = _corpus()


@pytest.fixture(scope="module")
def tokenizers():
    return CLIPTokenizer(), SimpleTokenizer()


def test_official_vocabulary_has_49408_tokens(tokenizers):
    ours, theirs = tokenizers
    assert (ours.vocab_size, ours.sot_token_id, ours.eot_token_id) == (49408, 49406, 49407)
    assert ours.encoder == theirs.encoder


def test_ids_and_decode_identical_on_corpus(tokenizers):
    ours, theirs = tokenizers
    assert len(CORPUS) >= 1000
    for text in CORPUS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ours.decode(ids) == theirs.decode(ids), text


@pytest.mark.parametrize("context_length", [77, 16])
def test_padded_and_truncated_batches_identical(tokenizers, context_length):
    ours, theirs = tokenizers
    tokens = ours(CORPUS, context_length=context_length, truncate=True)
    assert tokens.dtype == torch.long and tokens.shape == (len(CORPUS), context_length)
    assert torch.equal(tokens, theirs(CORPUS, context_length=context_length))
    too_long = sum(len(theirs.encode(t)) + 2 > context_length for t in CORPUS)
    assert too_long > 50  # the corpus really exercises truncation
    assert (tokens[:, -1] == ours.eot_token_id).sum() >= too_long


def test_fast_merges_equal_the_definition(tokenizers):
    ours, _ = tokenizers
    words = {w for text in CORPUS for w in ours.encode_and_show_work(text)["byte_words"]}
    for word in words:
        symbols = word_to_symbols(word)
        steps = merge_steps(symbols, ours.bpe_ranks)
        assert apply_merges(symbols, ours.bpe_ranks) == (steps[-1]["symbols"] if steps else symbols)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_string_identical_to_open_clip(tokenizers, text):
    ours, theirs = tokenizers
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ours.decode(ids) == theirs.decode(ids)
    assert torch.equal(ours([text], truncate=True), theirs([text]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200))
def test_any_word_merges_identical_to_open_clip(tokenizers, text):
    """One long word (no spaces) takes the merge loop through many steps."""
    ours, theirs = tokenizers
    word = ours.byte_encode(text)
    assert " ".join(ours.bpe(word)) == theirs.bpe(word)
