"""Shingling: documents to sorted sets of 32-bit shingle hashes, a batch at a time, with numpy.

Normalization (each step configurable): lowercase; numbers kept as written, or every number
(digits with an optional decimal part) replaced by ``0``; accents kept, or combining marks
dropped after NFD. Words are the runs of ``\\w`` (Unicode letters, digits and the underscore), so
punctuation separates words and never belongs to one. datatrove's MinHash differs: it lowercases,
turns numbers into ``0``, strips accents, replaces its punctuation set (which holds the
underscore) by spaces and splits with spaCy's English tokenizer; and a text shorter than n words
gives no shingle there, one shingle of all its words here.

Words are hashed once each (xxh32, in C through ``map``); a word n-gram's hash is a mix of its
words' hashes computed for the whole batch with vectorized multiply-adds, so no Python loop runs
per shingle. Character n-grams hash each n-gram's UTF-8 bytes with xxh32.

Shingle hashes are 32 bits: two different shingles of a pair of 300-shingle documents collide
with probability about 300 * 300 / 2**32 = 2e-5, which is what "true Jaccard" of these sets means.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import xxhash

WORD_RE = re.compile(r"\w+")
SPACE_RE = re.compile(r"\s+")
NUMBER_RE = re.compile(r"\d+(?:[.,،٫⎖⎗⎘]\d+)?")  # datatrove's number pattern (Python's \d is Unicode Nd)
ShingleKind = Literal["word", "char"]


@cache
def _combining_marks() -> dict[int, None]:
    """str.translate table deleting every combining mark (Unicode category Mn); built once."""
    return dict.fromkeys(c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Mn")


def normalize_text(text: str, lowercase: bool = True, numbers: str = "keep", accents: str = "keep") -> str:
    """The text as shingled: lowercased, numbers as ``0`` and accents stripped when asked."""
    if lowercase:
        text = text.lower()
    if numbers == "zero":
        text = NUMBER_RE.sub("0", text)
    if accents == "strip":
        text = unicodedata.normalize("NFD", text).translate(_combining_marks())
    return text

# Odd 64-bit constants for mixing the n words of an n-gram (fixed: they define the shingle ids).
_POSITION_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9,
     0x2545F4914F6CDD1D, 0x27D4EB2F165667C5, 0x85EBCA77C2B2AE63, 0xA0761D6478BD642F,
     0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3, 0x589965CC75374CC3, 0x1D8E4E27C47D124F],
    dtype=np.uint64)
MAX_WORD_NGRAM = len(_POSITION_MULTIPLIERS)


@dataclass(frozen=True)
class ShingleSets:
    """Sorted unique shingle hashes of a batch: document i owns ``values[offsets[i]:offsets[i+1]]``."""

    values: np.ndarray  # uint32
    offsets: np.ndarray  # int64, len(docs) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]


def _mix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit finalizer (splitmix64's) so that every output bit depends on every input bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def word_shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram of each text (duplicates kept) and each shingle's document.

    A text with fewer than ``ngram`` words gives one shingle made of all its words; a text with
    no word gives none.
    """
    if not 1 <= ngram <= MAX_WORD_NGRAM:
        raise ValueError(f"word n-gram size must be in 1..{MAX_WORD_NGRAM}, got {ngram}")
    words: list[str] = []
    counts = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        found = WORD_RE.findall(text)
        counts[i] = len(found)
        words.extend(found)
    word_hashes = np.fromiter(map(xxhash.xxh32_intdigest, map(str.encode, words)), dtype=np.uint64, count=len(words))
    doc_of_word = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
    doc_end = np.cumsum(counts)[doc_of_word]  # index one past the last word of each word's document
    # Mix the n-gram starting at every word position of the concatenation (slices, no gathers),
    # then keep those that end inside their own document.
    full = max(len(word_hashes) - ngram + 1, 0)
    acc = np.zeros(full, dtype=np.uint64)
    for j in range(ngram):
        acc += word_hashes[j:j + full] * _POSITION_MULTIPLIERS[j]
    inside = np.arange(full) + ngram <= doc_end[:full]
    hashes, doc_of = [acc[inside]], [doc_of_word[:full][inside]]
    # A short non-empty document gets one shingle of all its words (rare: a Python loop is fine).
    first_word = np.cumsum(counts) - counts
    for i in np.flatnonzero((counts > 0) & (counts < ngram)):
        short = word_hashes[first_word[i]:first_word[i] + counts[i]] * _POSITION_MULTIPLIERS[:counts[i]]
        hashes.append(np.array([short.sum() + np.uint64(counts[i])], dtype=np.uint64))
        doc_of.append(np.array([i], dtype=np.int64))
    mixed = _mix64(np.concatenate(hashes))
    return (mixed >> np.uint64(32)).astype(np.uint32), np.concatenate(doc_of)


def char_shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every character n-gram of each whitespace-collapsed text, and their documents."""
    hashes: list[int] = []
    docs: list[int] = []
    for i, text in enumerate(texts):
        clean = SPACE_RE.sub(" ", text).strip()
        if not clean:
            continue
        grams = [clean[k:k + ngram] for k in range(max(1, len(clean) - ngram + 1))]
        hashes.extend(map(xxhash.xxh32_intdigest, map(str.encode, grams)))
        docs.extend([i] * len(grams))
    return np.array(hashes, dtype=np.uint32), np.array(docs, dtype=np.int64)


def shingle_sets(texts: Sequence[str], kind: ShingleKind = "word", ngram: int = 5, lowercase: bool = True,
                 numbers: str = "keep", accents: str = "keep") -> ShingleSets:
    """Sorted unique shingle hashes per text (normalized first, see the module docstring)."""
    make = word_shingle_hashes if kind == "word" else char_shingle_hashes
    hashes, doc_of = make([normalize_text(t, lowercase, numbers, accents) for t in texts], ngram)
    # Sorting (document, hash) keys sorts each document's set and groups documents in one pass.
    keys = (doc_of.astype(np.uint64) << np.uint64(32)) | hashes.astype(np.uint64)
    keys.sort()
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
    values = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    doc_ids = (keys >> np.uint64(32)).astype(np.int64)
    offsets = np.searchsorted(doc_ids, np.arange(len(texts) + 1), side="left").astype(np.int64)
    return ShingleSets(values, offsets)


def gather_ranges(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``values[starts[i]:starts[i]+lengths[i]]`` for all i; also each item's range index."""
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return values[np.repeat(starts, lengths) + within], owner


def pairwise_jaccard(values_a: np.ndarray, offsets_a: np.ndarray, rows_a: np.ndarray,
                     values_b: np.ndarray, offsets_b: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the sets ``rows_a[k]`` (in A) and ``rows_b[k]`` (in B), for all k.

    Vectorized: tag each element with its pair number, sort, and count the adjacent equal keys
    (an element present in both sets of a pair appears twice in a row; sets hold no repeats).
    """
    len_a = offsets_a[rows_a + 1] - offsets_a[rows_a]
    len_b = offsets_b[rows_b + 1] - offsets_b[rows_b]
    items_a, pair_a = gather_ranges(values_a, offsets_a[rows_a], len_a)
    items_b, pair_b = gather_ranges(values_b, offsets_b[rows_b], len_b)
    keys = np.concatenate([(pair_a.astype(np.uint64) << np.uint64(32)) | items_a.astype(np.uint64),
                           (pair_b.astype(np.uint64) << np.uint64(32)) | items_b.astype(np.uint64)])
    keys.sort()
    repeated = keys[1:] == keys[:-1]
    shared = np.bincount((keys[1:][repeated] >> np.uint64(32)).astype(np.int64), minlength=len(rows_a))
    union = len_a + len_b - shared
    return np.where(union > 0, shared / np.maximum(union, 1), 0.0)
