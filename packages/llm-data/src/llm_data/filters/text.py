"""Fast text statistics shared by the rule-based filters: word splitting and n-gram repetition.

Words are those of spaCy's English tokenizer, the splitting datatrove's Gopher, C4 and FineWeb
filters use, token for token (``llm_data.filters.words``). Repetition statistics hash n-grams with
numpy instead of joining strings.
"""

from __future__ import annotations

import re
import sys
from functools import cache

import numpy as np

from llm_data.filters.words import english_tokenizer

# The punctuation set of the Gopher / FineWeb rules (the same characters datatrove uses).
PUNCTUATION = set(
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(chr(x) for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b)))
# Sentence-final characters of many scripts: datatrove's TERMINAL_PUNCTUATION, FineWeb's line rule.
TERMINAL_PUNCTUATION = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a"
    "\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945"
    "\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u203c\u203d"
    "\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce"
    "\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e\uff1f"
    "\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87"
    "\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142"
    "\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c"
    "\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd"
    "\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7"
    "\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43\U00011a9b"
    "\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5"
    "\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
)
# A word made only of these is a symbol, not a word, for the Gopher word counts (datatrove's set).
SYMBOL_CHARACTERS = frozenset(PUNCTUATION) | TERMINAL_PUNCTUATION

_RECENT_LIMIT = 512  # texts whose words are kept: a batch's worth, for the next filter of the chain
_recent: dict[int, tuple[str, list[str]]] = {}


def split_words(text: str) -> list[str]:
    """Words and punctuation tokens of ``text``, in order, as datatrove's ``split_into_words``.

    Recent results are kept: the filters of a chain (quality, then repetition) take a batch in
    turn and ask for the same texts.
    """
    recent = _recent.get(id(text))
    if recent is not None and recent[0] is text:
        return recent[1]
    words = english_tokenizer().words(text)
    if len(_recent) >= _RECENT_LIMIT:
        del _recent[next(iter(_recent))]  # the oldest
    _recent[id(text)] = (text, words)
    return words


def _class_of(codes: list[int]) -> str:
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)


@cache
def _word_scans() -> tuple[re.Pattern, re.Pattern]:
    """Over words joined by single spaces: words made only of symbol characters, and words without
    a letter (``str.isalpha``: \\w minus digits, underscore and the numerals that are no letters)."""
    codes = np.concatenate([np.arange(0xD800), np.arange(0xE000, sys.maxunicode + 1)])  # no surrogates
    every_character = codes.astype("<u4").tobytes().decode("utf-32-le")
    numerals = [ord(c) for c in filter(str.isnumeric, every_character) if not c.isalpha() and not c.isdecimal()]
    symbols = re.compile(rf"(?<!\S)[{_class_of(sorted(map(ord, SYMBOL_CHARACTERS)))}]+(?!\S)")
    letterless = re.compile(rf"(?<!\S)(?:[^\w\s]|[\d_{_class_of(numerals)}])+(?!\S)")
    return symbols, letterless


def word_counts(words: list[str]) -> tuple[int, int, int]:
    """(non-symbol words, their total characters, words holding no letter), in three C-level scans."""
    symbol_words, letterless_words = _word_scans()
    joined = " ".join(words)
    symbols = symbol_words.findall(joined)
    content = len(words) - len(symbols)
    content_chars = len(joined) - (len(words) - 1) - sum(map(len, symbols)) if words else 0
    return content, content_chars, len(letterless_words.findall(joined))


def is_symbol(word: str) -> bool:
    """True when every character of the word is a symbol character."""
    return all(ch in SYMBOL_CHARACTERS for ch in word)


def word_ids(words: list[str]) -> np.ndarray:
    """A 64-bit id per word, equal for equal words: Python's string hash (computed in C, and cached
    on the string), so two different words share an id with probability about 2**-64."""
    return np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)


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
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
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
