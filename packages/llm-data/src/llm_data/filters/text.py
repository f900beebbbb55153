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

# Word splitting in the manner of spaCy's English tokenizer (which datatrove uses), at a fraction
# of its cost: whitespace-separated chunks; prefix characters (opening brackets, quotes, ...) and
# suffix characters (closing brackets, commas, periods, ...) peeled off one by one; then spaCy's
# infix rules (hyphens and : < > = / between letters, operators between digits, a comma between
# letters, a period between a lower and an upper case letter) split what is left.
_PREFIX = "§%=—–\"'([{<*#&_,:;!?¿¡…“”‘’«»$£€¥`"
_SUFFIX = "…,:;!?)]}>_#*&\"'”’»%."
_P, _S = re.escape(_PREFIX), re.escape(_SUFFIX)
# Each infix alternative starts with its character, so the engine scans for it cheaply.
_INFIX = (r"[-–—~:<>=/](?<=[^\W_].)(?=[^\W\d_])|[-+*^](?<=[0-9].)(?=[0-9-])"
          r"|,(?<=[^\W\d_],)(?=[^\W\d_])|\.(?<=[a-z'\"]\.)(?=[A-Z'\"])")
# English clitics split off as spaCy's exceptions do: "can't" -> "ca n't", "it's" -> "it 's".
_CLITIC = r"(?<=[^\W\d_])(?:n['’]t|['’](?:s|re|ll|ve|d|m))(?![^\W_])"
_INFIX_SPLIT = re.compile(f"({_INFIX}|{_CLITIC})")  # captured, so that split() keeps the pieces
_WORD = re.compile(
    rf"(?<!\S)(?:n['’]t|['’](?:s|re|ll|ve|d|m))(?!\S)"           # a clitic split off above
    rf"|\.\.\.+|…"                                              # ellipses stay whole
    rf"|(?:[{_P}]|\+(?![0-9]))(?<![^\s{_P}+].)"                  # a prefix character at a chunk's start
    rf"|\S*[^\s{_S}]"                                            # a chunk's core: up to its last non-suffix
    rf"|[{_S}]"                                                   # each suffix character
    rf"|\S")                                                     # anything left


def _tokenize(text: str) -> list[str]:
    # Infixes first, in one pass over the text: spaces around them make them chunks of their own
    # (split + join stays in C, where sub() would expand a template per match in Python).
    return _WORD.findall(" ".join(_INFIX_SPLIT.split(text)))


_last_split: tuple[str, list[str]] = ("", [])


def split_words(text: str) -> list[str]:
    """Words and punctuation tokens of ``text``, in order.

    The last result is kept: consecutive filters (quality, then repetition) ask for the same text.
    """
    global _last_split
    if _last_split[0] is text:
        return _last_split[1]
    words = _tokenize(text)
    _last_split = (text, words)
    return words


# Over words joined by single spaces: words made only of punctuation, and words with no letter.
_SYMBOL_WORDS = re.compile(rf"(?<!\S)[{re.escape(''.join(sorted(PUNCTUATION)))}]+(?!\S)")
_LETTERLESS_WORDS = re.compile(r"(?<!\S)(?:[^\w\s]|[\d_])+(?!\S)")


def word_counts(words: list[str]) -> tuple[int, int, int]:
    """(non-symbol words, their total characters, words holding no letter), in three C-level scans."""
    joined = " ".join(words)
    symbols = _SYMBOL_WORDS.findall(joined)
    content = len(words) - len(symbols)
    content_chars = len(joined) - (len(words) - 1) - sum(map(len, symbols)) if words else 0
    return content, content_chars, len(_LETTERLESS_WORDS.findall(joined))


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
