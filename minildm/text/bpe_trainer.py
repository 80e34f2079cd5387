"""Learning BPE merges from a corpus (Sennrich et al. 2016, "Neural Machine Translation of Rare
Words with Subword Units", algorithm 1), in the format `CLIPTokenizer` reads.

Start from the corpus's words, each spelled as its byte characters with `</w>` on the last one
(exactly as `CLIPTokenizer` spells them). Then, `num_merges` times:

    count every adjacent pair of symbols, weighted by how often its word occurs:
        count(a, b) = sum over words w of freq(w) * #{i : w_i = a, w_{i+1} = b}
    take the most frequent pair (ties: the smallest pair in string order),
    record it as the next merge, and join it everywhere in every word.

Counting all pairs again after each merge would re-read the whole corpus every time. Instead we
count once, and keep an index pair -> words that contain it: a merge only changes the words that
contain its pair, so only their pair counts are taken out and put back. Words are counted once
each (with their frequency), so 10,000 captions over a 50-word vocabulary are 50 words of work.
"""

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable

import regex
from tqdm.auto import tqdm

from minildm.text.bpe import merge_pair, word_to_symbols
from minildm.text.tokenizer import WORD_PATTERN, bytes_to_unicode, clean_text


def word_frequencies(corpus: Iterable[str]) -> Counter:
    """How often each byte-encoded word (as a tuple of symbols, `</w>` on the last) occurs."""
    byte_encoder = bytes_to_unicode()
    pattern = regex.compile(WORD_PATTERN, regex.IGNORECASE)
    counts = Counter()
    for text, repeats in Counter(corpus).items():  # captions repeat: clean each distinct one once
        for word in pattern.findall(clean_text(text)):
            counts["".join(byte_encoder[b] for b in word.encode("utf-8"))] += repeats
    return Counter({word_to_symbols(word): n for word, n in counts.items()})


def train_bpe(corpus: Iterable[str], num_merges: int, progress: bool = False) -> list[tuple[str, str]]:
    """Learn up to `num_merges` merges from `corpus` (an iterable of texts), in rank order.

    Stops early, returning fewer merges, once every word is a single symbol.
    """
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}")
    frequencies = word_frequencies(corpus)
    words = list(frequencies)  # words[k]: the current symbols of word k
    freqs = [frequencies[w] for w in words]
    pair_counts = Counter()  # count(a, b), as in the module docstring
    words_with_pair = defaultdict(set)  # (a, b) -> {k : word k may contain a b}
    for k, word in enumerate(words):
        for pair in itertools.pairwise(word):
            pair_counts[pair] += freqs[k]
            words_with_pair[pair].add(k)

    merges = []
    for _ in tqdm(range(num_merges), desc="learning BPE merges", disable=not progress):
        if not pair_counts:
            break
        # the most frequent pair; ties go to the smallest pair in string order
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        for k in sorted(words_with_pair.pop(best)):
            old, new = words[k], merge_pair(words[k], best)
            if old == new:  # stale index entry: an earlier merge already took this pair
                continue
            # take the word's old pairs out of the counts and put its new pairs in
            for pair in itertools.pairwise(old):
                pair_counts[pair] -= freqs[k]
                if pair_counts[pair] == 0:
                    del pair_counts[pair]
            for pair in itertools.pairwise(new):
                pair_counts[pair] += freqs[k]
                words_with_pair[pair].add(k)
            words[k] = new
    return merges
