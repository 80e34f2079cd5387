"""The tokenizer under bad input (issue 15, item 12): a TypeError for anything but a str or a list of
str, ids outside the vocabulary refused by decode, a bound on context_length; and a vocabulary file
that is not text is a ValueError naming it."""

import numpy as np
import pytest
import torch

from minildm.text import CLIPTokenizer
from minildm.text.tokenizer import MAX_CONTEXT_LENGTH


@pytest.fixture(scope="module")
def tok():
    return CLIPTokenizer.from_merges([("r", "e"), ("re", "d</w>")])  # 516 tokens: 512 bytes, 2 merges, 2 special


def one_line(err: pytest.ExceptionInfo, *phrases: str) -> None:
    message = str(err.value)
    assert message and "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message


@pytest.mark.parametrize(
    "texts, phrase",
    [
        (None, "texts must be a str or a list of str, got NoneType"),
        (5, "got int"),
        (b"red", "got bytes"),
        ({"red": 1, "blue": 2}, "got dict"),  # was tokenized by its keys
        ({"red"}, "got set"),
        (["red", None], "texts[1] must be a str, got NoneType"),
        (("red", b"blue"), "texts[1] must be a str, got bytes: decode bytes first"),
        ([["red"]], "texts[0] must be a str, got list"),
    ],
)
def test_call_takes_only_a_str_or_a_list_of_str(tok, texts, phrase):
    with pytest.raises(TypeError) as err:
        tok(texts, context_length=8)
    one_line(err, phrase)


@pytest.mark.parametrize("text", [None, 3, b"red", ["red"]])
def test_encode_takes_only_a_str(tok, text):
    for method in (tok.encode, tok.encode_and_show_work):
        with pytest.raises(TypeError) as err:
            method(text)
        one_line(err, "text must be a str", f"got {type(text).__name__}")


def test_lists_and_tuples_of_str_still_work(tok):
    assert torch.equal(tok(("red", "er"), context_length=6), tok(["red", "er"], context_length=6))
    assert tok([], context_length=6).shape == (0, 6)


def test_context_length_is_bounded_and_an_int(tok):
    with pytest.raises(ValueError) as err:
        tok("red", context_length=10**9)  # would allocate 8 GB before reading the text
    one_line(err, f"at most {MAX_CONTEXT_LENGTH}", "got 1000000000")
    assert tok("red", context_length=MAX_CONTEXT_LENGTH).shape == (1, MAX_CONTEXT_LENGTH)
    for bad in (77.0, "77", True):
        with pytest.raises(TypeError) as err:
            tok("red", context_length=bad)
        one_line(err, "context_length must be an int")


def test_decode_refuses_ids_outside_the_vocabulary(tok):
    red = tok.encode("red")
    assert tok.decode(red) == "red " and tok.decode(np.array(red)) == "red " and tok.decode(torch.tensor(red)) == "red "
    for ids, phrase in (
        ([-1], "token id -1 at position 0"),
        ([*red, 516], "token id 516 at position 1"),
        (torch.tensor([0, -516]), "-516"),
    ):
        with pytest.raises(ValueError) as err:
            tok.decode(ids)
        one_line(err, phrase, "outside the vocabulary [0, 516)")


@pytest.mark.parametrize(
    "ids, error, phrase",
    [
        ([1.5], TypeError, "integer token ids, got float 1.5 at position 0"),
        (torch.tensor([1.0]), TypeError, "got float"),
        (["a"], TypeError, "got str 'a'"),
        ("abc", TypeError, "got str"),
        (None, TypeError, "got NoneType"),
        (torch.zeros(1, 3, dtype=torch.long), ValueError, "tensor of shape (1, 3): decode each row"),
    ],
)
def test_decode_refuses_ids_that_are_not_integers(tok, ids, error, phrase):
    with pytest.raises(error) as err:
        tok.decode(ids)
    one_line(err, phrase)


def test_a_vocabulary_file_that_is_not_a_merges_file(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"#version\n\xff\xfe\x00")
    (tmp_path / "fake.gz").write_bytes(b"not gzip at all")
    for path, phrase in (
        (tmp_path / "binary.txt", "is not UTF-8 text"),
        (tmp_path / "fake.gz", "not a readable merges file"),
    ):
        with pytest.raises(ValueError) as err:
            CLIPTokenizer(vocab_path=path)
        one_line(err, str(path), phrase)
    with pytest.raises(FileNotFoundError) as err:
        CLIPTokenizer(vocab_path=tmp_path / "absent.txt")
    one_line(err, str(tmp_path / "absent.txt"))
