"""The BPE trainer: merges worked out by hand on Sennrich et al.'s toy corpus, the file round trip
into CLIPTokenizer, and the incremental pair counts against counting from scratch."""

import itertools
from collections import Counter

import pytest

from minildm.text import CLIPTokenizer, read_merges, train_bpe, write_merges
from minildm.text.bpe import merge_pair
from minildm.text.bpe_trainer import word_frequencies

TOY = ["low"] * 5 + ["lower"] * 2 + ["newest"] * 6 + ["widest"] * 3


def test_toy_corpus_merges_worked_out_by_hand():
    # words: l o w</w> x5, l o w e r</w> x2, n e w e s t</w> x6, w i d e s t</w> x3
    # 1. (e,s) 9 and (s,t</w>) 9 tie: the smaller pair in string order wins -> es
    # 2. (es,t</w>) 9                                    -> est</w>
    # 3. (l,o) 7                                          -> lo
    # 4. (e,w) 6, (n,e) 6, (w,est</w>) 6 tie: (e,w)      -> ew   (newest: n ew est</w>)
    # 5. (ew,est</w>) 6, (n,ew) 6 tie: (ew,est</w>)      -> ewest</w>
    # 6. (n,ewest</w>) 6                                 -> newest</w>
    # 7. (lo,w</w>) 5                                     -> low</w>
    # 8. (w,i) 3, (i,d) 3, (d,est</w>) 3 tie (lower's pairs are 2): (d,est</w>)
    expected = [
        ("e", "s"),
        ("es", "t</w>"),
        ("l", "o"),
        ("e", "w"),
        ("ew", "est</w>"),
        ("n", "ewest</w>"),
        ("lo", "w</w>"),
        ("d", "est</w>"),
    ]
    assert train_bpe(TOY, 8) == expected


def test_stops_when_every_word_is_one_symbol():
    merges = train_bpe(["ab ab", "abc"], 100)
    assert merges == [("a", "b</w>"), ("a", "b"), ("ab", "c</w>")]


def test_incremental_counts_match_counting_from_scratch():
    """Replay the learned merges on the word list and recount all pairs before each one."""
    corpus = [
        f"a {c} {s} at the {p}"
        for c in ("red", "green", "blue")
        for s in ("circle", "square", "star")
        for p in ("top", "bottom left")
    ] * 3
    corpus += ["it's 2024: naïve café, 日本語 😀"]
    merges = train_bpe(corpus, 40)
    words = word_frequencies(corpus)
    for merge in merges:
        counts = Counter()
        for word, n in words.items():
            for pair in itertools.pairwise(word):
                counts[pair] += n
        assert merge == min(counts, key=lambda pair: (-counts[pair], pair))
        words = Counter({merge_pair(w, merge): n for w, n in words.items()})


def test_trained_file_loads_in_clip_tokenizer(tmp_path):
    captions = ["a small red circle at the top left", "a large blue square at the bottom right", "a red star"] * 20
    merges = train_bpe(captions, 60)
    path = write_merges(merges, tmp_path / "shapes_bpe.txt.gz")
    assert read_merges(path) == merges
    tok = CLIPTokenizer(path)
    assert tok.vocab_size == 512 + len(merges) + 2 and tok.eot_token_id == tok.vocab_size - 1
    assert CLIPTokenizer.from_merges(merges).encoder == tok.encoder
    ids = tok.encode("a red circle at the top")
    assert len(ids) == 6  # every word is one token once enough merges are learned
    assert tok.decode(ids) == "a red circle at the top "
    assert tok(["a red square"], context_length=16).shape == (1, 16)
    assert tok.encode("zebra") and tok.decode(tok.encode("zebra")) == "zebra "  # unseen words fall back to bytes


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_merges"):
        train_bpe(["a"], -1)
    with pytest.raises(ValueError, match="pair of non-empty strings"):
        CLIPTokenizer.from_merges([("a", "")])
