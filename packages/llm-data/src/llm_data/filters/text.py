"""Fast text statistics shared by the rule-based filters: word splitting and n-gram repetition.

Words follow the shape of spaCy's English tokenizer (which datatrove uses) without its cost:
whitespace-separated chunks with leading and trailing punctuation split off, so ``"end."`` gives
``end`` and ``.``. Repetition statistics hash n-grams with numpy instead of joining strings.
"""

from __future__ import annotations

import re

import numpy as np

# The punctuation set of the Gopher / FineWeb rules (the same characters datatrove uses).
PUNCTUATION = set(
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(chr(x) for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b)))

# Word splitting in the manner of spaCy's English tokenizer: whitespace-separated chunks, with
# prefix characters (opening brackets, quotes, ...) and suffix characters (closing brackets,
# commas, periods, ...) peeled off one by one; whatever sits inside a chunk stays one word.
_PREFIX = "§%=—–+\"'([{<*#&_,:;!?¿¡…“”‘’«»$£€¥`"
_SUFFIX = "…,:;!?)]}>_#*&\"'”’»%."
_P, _S = re.escape(_PREFIX), re.escape(_SUFFIX)
_WORD = re.compile(
    rf"\.\.\.+|…"                                # ellipses stay whole
    rf"|(?:(?<=\s)|(?<![^{_P}]))[{_P}]"              # a prefix character at the start of a chunk
    rf"|\S*?[^\s{_S}](?=[{_S}]*(?:\s|\Z))"           # the chunk's core, up to its suffixes
    rf"|[{_S}]"                                      # each suffix character
    rf"|\S")                                        # anything left (cannot happen, kept for safety)


def split_words(text: str) -> list[str]:
    """Words and punctuation tokens of ``text``, in order."""
    return _WORD.findall(text)


def is_symbol(word: str) -> bool:
    """True when every character of the word is punctuation."""
    return all(ch in PUNCTUATION for ch in word)


def word_ids(words: list[str]) -> np.ndarray:
    """Map words to dense integer ids (equal words, equal ids)."""
    vocab: dict[str, int] = {}
    return np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.uint64, count=len(words))


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every n-gram of word ids (collisions are negligible here)."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(count, dtype=np.uint64)
    mult = np.uint64(1_000_003)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * mult + ids[k: k + count] + np.uint64(1)
    return h


def window_sums(values: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``values`` over every window of ``n`` consecutive positions."""
    csum = np.concatenate(([0], np.cumsum(values)))
    return csum[n:] - csum[:-n]


def top_ngram_chars(hashes: np.ndarray, ngram_chars: np.ndarray) -> int:
    """Characters covered by the most frequent n-gram: its length times its count.

    Among equally frequent n-grams the first one seen wins, as with ``Counter.most_common``.
    """
    _, first, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
    best = counts.max()
    winner = first[counts == best].min()
    return int(ngram_chars[winner]) * int(best)


def duplicate_ngram_chars(hashes: np.ndarray, word_lengths: np.ndarray, n: int, limit: float) -> int:
    """Characters in repeated n-grams, counted greedily left to right (Gopher / datatrove).

    A repeated n-gram counts its characters (words joined without spaces) and the scan jumps past
    it. Returns early with a cheap upper bound when even that stays within ``limit``.
    """
    if len(hashes) == 0:
        return 0
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    seen_before = first[inverse] < np.arange(len(hashes))
    if not seen_before.any():
        return 0
    # Upper bound: characters of every word covered by some repeated window.
    cover = np.zeros(len(word_lengths) + 1, dtype=np.int64)
    starts = np.flatnonzero(seen_before)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    bound = int(word_lengths[np.cumsum(cover[:-1]) > 0].sum())
    if bound <= limit:
        return bound
    return _greedy_duplicate_chars(hashes.tolist(), window_sums(word_lengths, n).tolist(), n)


def _greedy_duplicate_chars(hashes: list[int], chars: list[int], n: int) -> int:
    unique: set[int] = set()
    repeated, idx, end = 0, 0, len(hashes)
    while idx < end:
        h = hashes[idx]
        if h in unique:
            repeated += chars[idx]
            idx += n
        else:
            unique.add(h)
            idx += 1
    return repeated
