"""Applying BPE merges to one word (Sennrich et al. 2016, sec. 3.2; CLIP's `bpe`).

A word starts as its characters, the last one marked `</w>` (end of word). Each merge (a, b) has
a rank: its line in the merges file. Repeat: among the adjacent pairs of the word, take the one of
lowest rank, and join every occurrence of it, left to right; stop when no adjacent pair has a rank.

    "lower" -> l o w e r</w> -> lo w e r</w> -> low e r</w> -> low er</w> -> lower</w>

`merge_steps` does exactly that and records every step: it is the definition, and what
`CLIPTokenizer.encode_and_show_work` shows. Each step scans the whole word, so a word of n
characters costs O(n^2): 16 s for 10,000 letters without a space. `apply_merges` computes the
same result in O(n log n) with a linked list of symbols and a heap of (rank, position) of the
adjacent pairs; tests/test_tokenizer_parity.py checks that the two agree.
"""

import heapq
import itertools

END_OF_WORD = "</w>"


def word_to_symbols(word: str) -> tuple[str, ...]:
    """A byte-encoded word as its characters, the last one marked as the end of the word."""
    return (*word[:-1], word[-1] + END_OF_WORD)


def merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Join every occurrence of `pair` in `symbols`, left to right: ('a','a','a') -> ('aa','a')."""
    first, second = pair
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


def merge_steps(symbols: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> list[dict]:
    """The definition, step by step: [{"rank", "pair", "symbols"}, ...] until no pair has a rank."""
    steps = []
    while len(symbols) > 1:
        ranked = [(ranks[pair], pair) for pair in itertools.pairwise(symbols) if pair in ranks]
        if not ranked:
            break
        rank, pair = min(ranked)
        symbols = merge_pair(symbols, pair)
        steps.append({"rank": rank, "pair": pair, "symbols": symbols})
    return steps


def apply_merges(symbols: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    """The symbols `merge_steps` ends with, in O(n log n).

    Symbol i keeps its index while it grows; `next_of` / `prev_of` link the live ones. The heap
    holds (rank, i) for each adjacent pair (i, next_of[i]) that has a rank; entries go stale when
    a neighbour merges and are checked before use. All occurrences of the lowest rank are joined
    in one left-to-right pass, as in the definition: a merge never re-creates its own pair (a+b
    differs from a and from b), so the pass is complete before any other rank is looked at.
    """
    symbols = list(symbols)
    n = len(symbols)
    next_of = list(range(1, n + 1))  # n means "no next symbol"
    prev_of = list(range(-1, n - 1))  # -1 means "no previous symbol"
    alive = [True] * n

    def pair_at(i: int) -> tuple[str, str] | None:
        return (symbols[i], symbols[next_of[i]]) if 0 <= i < n and alive[i] and next_of[i] < n else None

    heap = [(ranks[pair], i) for i in range(n - 1) if (pair := pair_at(i)) in ranks]
    heapq.heapify(heap)
    while heap:
        rank = heap[0][0]
        positions = []  # every queued occurrence of this rank, left to right
        while heap and heap[0][0] == rank:
            positions.append(heapq.heappop(heap)[1])
        for i in positions:
            pair = pair_at(i)
            if pair is None or ranks.get(pair) != rank:  # stale: a neighbour merged first
                continue
            j = next_of[i]
            symbols[i], alive[j] = pair[0] + pair[1], False
            next_of[i] = next_of[j]
            if next_of[i] < n:
                prev_of[next_of[i]] = i
            for left in (prev_of[i], i):  # the two new adjacent pairs around the merged symbol
                if (new_pair := pair_at(left)) in ranks:
                    heapq.heappush(heap, (ranks[new_pair], left))
    return tuple(s for s, is_alive in zip(symbols, alive) if is_alive)
