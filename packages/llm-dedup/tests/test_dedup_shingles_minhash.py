"""Shingling, exact Jaccard and MinHash against plain-Python and datasketch references."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch.lsh import _optimal_param

from llm_dedup.evaluation import jaccard, shingle_set
from llm_dedup.minhash import EMPTY, MinHasher, band_keys, candidate_probability, optimal_bands, recall_target_bands
from llm_dedup.shingles import pairwise_jaccard, shingle_sets

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank today.",
         "the quick brown fox jumps over the lazy dog near the river bank TODAY!",
         "A completely different sentence about ancient libraries and their many scrolls.",
         "short text", "", "   ...   "]


def test_word_shingle_sets_match_python_sets(sentences):
    rng = random.Random(0)
    texts = [" ".join(rng.sample(sentences, 5)) for _ in range(50)] + TEXTS
    sets = shingle_sets(texts, "word", 5)
    for i, text in enumerate(texts):
        assert len(sets.of(i)) == len(shingle_set(text, 5)), text
        assert np.all(np.diff(sets.of(i).astype(np.int64)) > 0), "sorted, without repeats"
    own = shingle_sets(TEXTS, "word", 5)
    assert len(own.of(3)) == 1, "a text shorter than n words is one shingle"
    assert len(own.of(4)) == len(own.of(5)) == 0
    assert np.array_equal(own.of(0), own.of(1)), "case and punctuation do not matter by default"
    cased = shingle_sets(texts[:2], "word", 5, lowercase=False)
    assert not np.array_equal(cased.of(0), cased.of(1))


def test_char_shingles():
    sets = shingle_sets(["abcdef", "abc  def", "xyz"], "char", 3)
    assert len(sets.of(0)) == 4 and len(sets.of(2)) == 1
    assert len(set(sets.of(0)) & set(sets.of(1))) == 2  # "abc", "bcd"... vs "abc", "bc ", "c d"...


def test_vectorized_jaccard_equals_python_sets(corpus):
    texts = corpus.texts
    sets = shingle_sets(texts, "word", 5)
    a = np.array([p[0] for p in corpus.pairs[:200]] + list(range(100)))
    b = np.array([p[1] for p in corpus.pairs[:200]] + list(range(100, 200)))
    fast = pairwise_jaccard(sets.values, sets.offsets, a, sets.values, sets.offsets, b)
    slow = [jaccard(shingle_set(texts[i]), shingle_set(texts[j])) for i, j in zip(a, b, strict=True)]
    assert np.allclose(fast, slow, atol=1e-3)  # 32-bit shingle hashes: collisions are negligible
    assert np.allclose(fast[:200], [p[2] for p in corpus.pairs[:200]], atol=1e-3)


def test_minhash_estimates_jaccard(corpus):
    sets = shingle_sets(corpus.texts, "word", 5)
    signatures = MinHasher(256, seed=3).signatures(sets)
    pairs = np.array([(a, b) for a, b, _ in corpus.pairs])
    truth = np.array([s for _, _, s in corpus.pairs])
    estimate = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    error = estimate - truth
    assert abs(error.mean()) < 0.01, "unbiased"
    assert error.std() < 1.5 * np.sqrt((truth * (1 - truth)).mean() / 256) + 0.005


def test_signatures_are_seeded_and_empty_documents_marked():
    sets = shingle_sets(TEXTS, "word", 5)
    one, again, other = (MinHasher(64, seed=s).signatures(sets) for s in (1, 1, 2))
    assert np.array_equal(one, again) and not np.array_equal(one, other)
    assert np.all(one[4] == EMPTY) and np.array_equal(one[0], one[1])


def test_band_keys_equal_exactly_when_rows_equal():
    signatures = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [1, 3, 3, 4]], dtype=np.uint32)
    first = band_keys(signatures, 0, 2)
    assert first[0] == first[1] != first[2]
    second = band_keys(signatures, 1, 2)
    assert second[0] == second[2] != second[1]
    assert first[0] != band_keys(signatures[:, ::-1].copy(), 0, 2)[0]


@pytest.mark.parametrize("threshold,num_perm,weights", [(0.8, 128, (0.5, 0.5)), (0.8, 128, (0.1, 0.9)),
                                                         (0.5, 64, (0.5, 0.5)), (0.9, 256, (0.3, 0.7))])
def test_optimal_bands_match_datasketch(threshold, num_perm, weights):
    assert optimal_bands(threshold, num_perm, *weights) == _optimal_param(threshold, num_perm, *weights)


def test_candidate_probability_is_the_s_curve():
    assert candidate_probability(1.0, 10, 9) == pytest.approx(1.0)
    assert candidate_probability(0.0, 10, 9) == pytest.approx(0.0)
    assert candidate_probability(0.8, 20, 6) > 0.99


@pytest.mark.parametrize("threshold,num_perm,recall", [(0.8, 128, 0.99), (0.7, 64, 0.95), (0.9, 256, 0.999)])
def test_recall_target_bands_reach_the_target_at_the_fewest_false_candidates(threshold, num_perm, recall):
    bands, rows = recall_target_bands(threshold, num_perm, recall)
    assert bands * rows <= num_perm and candidate_probability(threshold, bands, rows) >= recall
    grid = np.linspace(0, threshold, 1001)

    def false_area(b, r):
        return np.trapezoid(candidate_probability(grid, b, r), grid)

    reaching = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)
                if candidate_probability(threshold, b, r) >= recall]
    assert false_area(bands, rows) <= min(false_area(b, r) for b, r in reaching) + 1e-12


def test_normalization_options():
    def same(a, b, **options):
        sets = shingle_sets([a, b], "word", 2, **options)
        return np.array_equal(sets.of(0), sets.of(1))

    assert not same("in 1990 it cost 3.50 dollars", "in 2001 it cost 12,75 dollars")
    assert same("in 1990 it cost 3.50 dollars", "in 2001 it cost 12,75 dollars", numbers="zero")
    assert not same("the café crème", "the cafe creme")
    assert same("the café crème", "the cafe creme", accents="strip")
    assert same("snake_case words", "SNAKE_CASE Words") and not same("snake_case words", "snake case words")
