"""CLIPTokenizer on its own: the byte table, the padded batches, the teaching trace, robustness to
any string, and finding / downloading / refusing the official vocabulary."""

import gzip
import random

import pytest
import regex
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minildm.text import CLIPTokenizer, vocab
from minildm.text.tokenizer import (
    WORD_PATTERN,
    bytes_to_unicode,
    clean_text,
    pre_tokenize,
)


@pytest.fixture(scope="module")
def tok():
    return CLIPTokenizer()


def test_byte_table_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord("a")] == "a" and table[ord(" ")] == "Ġ"  # space is the 33rd shifted byte: chr(256 + 32)


def test_known_prompt(tok):
    # pinned: "a photograph of an astronaut riding a horse" in the official vocabulary
    assert tok.encode("a photograph of an astronaut riding a horse") == [320, 8853, 539, 550, 18376, 6765, 320, 4558]
    assert tok.decode(tok.encode("A  Red\tCircle!")) == "a red circle ! "


def test_call_pads_with_zeros_between_start_and_end(tok):
    tokens = tok(["a red circle", ""], context_length=8)
    assert tokens.tolist() == [[49406, 320, 736, 7117, 49407, 0, 0, 0], [49406, 49407, 0, 0, 0, 0, 0, 0]]
    assert torch.equal(tok("a red circle", context_length=8)[0], tokens[0])


def test_too_long_raises_unless_truncate(tok):
    text = "red " * 10  # 10 tokens + start + end = 12
    with pytest.raises(ValueError, match="12 tokens long.*truncate=True"):
        tok([text], context_length=11)
    assert tok([text], context_length=12)[0, -1] == tok.eot_token_id
    cut = tok([text], context_length=5, truncate=True)[0].tolist()
    assert cut == [49406, 736, 736, 736, 49407]
    with pytest.raises(ValueError, match=">= 2"):
        tok(["a"], context_length=1)


def test_show_work_traces_every_stage(tok):
    work = tok.encode_and_show_work("  The COOL café's  ")
    assert work["cleaned"] == "the cool café's"
    assert work["words"] == ["the", "cool", "café", "'s"]
    assert work["byte_words"][2] == "cafÃ©"  # é is the two bytes C3 A9
    lower = work["merges"][1]
    assert lower["start"] == ("c", "o", "o", "l</w>") and lower["steps"][-1]["symbols"] == ("cool</w>",)
    ranks = [step["rank"] for step in work["merges"][2]["steps"]]
    assert all(tok.merges[r] == s["pair"] for r, s in zip(ranks, work["merges"][2]["steps"]))
    assert work["ids"] == tok.encode(work["text"])
    assert [tok.vocab[i] for i in work["ids"]] == work["symbols"]


def _no_space(text: str) -> str:
    return regex.sub(r"\s", "", text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<>"), max_size=500))
def test_any_string_round_trips_up_to_spaces(tok, text):
    """decode(encode(t)) is what the pre-tokenizer keeps of the cleaned text, with spaces between
    words moved about (the next test shows a character it does not keep)."""
    ids = tok.encode(text)
    assert all(0 <= i < tok.sot_token_id for i in ids)
    assert _no_space(tok.decode(ids)) == _no_space("".join(pre_tokenize(clean_text(text))))
    row = tok([text], context_length=32, truncate=True)[0]
    n = min(len(ids), 30)
    assert row[0] == tok.sot_token_id and row[n + 1] == tok.eot_token_id and row[: n + 1].tolist()[1:] == ids[:n]


def test_a_character_no_branch_of_clips_pattern_matches_is_dropped_as_open_clip_drops_it(tok):
    """U+0345 (combining ypogegrammeni): CLIP's pattern, compiled with IGNORECASE, matches it with
    neither [\\p{L}]+ nor [^\\s\\p{L}\\p{N}]+ (without IGNORECASE the second would), so OpenAI's and
    open_clip's tokenizers drop it, and so does this one. Found by the property test above."""
    from open_clip.tokenizer import SimpleTokenizer

    assert pre_tokenize("\u0345") == [] and regex.findall(WORD_PATTERN, "\u0345") == ["\u0345"]
    for text in ("\u0345", "a\u0345b", "x \u0345 y"):
        assert tok.encode(text) == SimpleTokenizer().encode(text)
    assert tok.encode("\u0345") == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 49407), max_size=100))
def test_any_ids_decode_without_error(tok, ids):
    assert isinstance(tok.decode(ids), str)
    assert tok.decode(torch.tensor(ids, dtype=torch.long)) == tok.decode(ids)


def test_100_kilobytes_of_odd_text(tok):
    rng = random.Random(0)
    pieces = ["😀", "日本", "e\u0301", "\x00", "&amp;", "Ã©", "\ud800", "  ", "it's", "42", "!!"]
    odd = "".join(rng.choice(pieces) if rng.random() < 0.3 else chr(rng.randint(32, 0x2FFF)) for _ in range(60_000))
    one_word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(100_000))
    for text in (odd, one_word):
        assert len(text.encode("utf-8", errors="replace")) >= 100_000
        ids = tok.encode(text)
        assert len(ids) > 1000
        assert tok([text], truncate=True).shape == (1, 77)


def test_missing_vocabulary_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(vocab.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(vocab, "CACHE_DIR", tmp_path)
    assert vocab.find_official_vocab() is None
    with pytest.raises(FileNotFoundError, match="open_clip_torch.*download_official_vocab"):
        CLIPTokenizer()


def test_download_verifies_the_checksum(tmp_path):
    official = vocab.find_official_vocab()
    assert vocab.sha256_of(official) == vocab.OFFICIAL_VOCAB_SHA256
    got = vocab.download_official_vocab(tmp_path / "v.txt.gz", url=official.as_uri())
    assert CLIPTokenizer(got).encoder == CLIPTokenizer(official).encoder
    bad = tmp_path / "bad.txt.gz"
    with gzip.open(bad, "wt") as f:
        f.write("#version: 0.2\ni n\n")
    with pytest.raises(ValueError, match="SHA-256"):
        vocab.download_official_vocab(tmp_path / "w.txt.gz", url=bad.as_uri())
    assert not (tmp_path / "w.txt.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt.gz", "v.txt.gz"]  # no temp file left


def test_bad_merges_file_is_rejected(tmp_path):
    path = tmp_path / "merges.txt"
    path.write_text("#version: 0.2\ni n\nthree symbols here\n")
    with pytest.raises(ValueError, match="merges.txt:3"):
        CLIPTokenizer(path)
