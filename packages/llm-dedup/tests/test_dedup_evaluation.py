"""The benchmark's ground truth: every pair at or above the threshold, found exactly, and the scores."""

from __future__ import annotations

import itertools

from llm_dedup.evaluation import exact_duplicate_pairs, jaccard, near_duplicate_corpus, score_dedup, shingle_set


def test_exact_duplicate_pairs_equal_brute_force(corpus):
    extra = [corpus.texts[0] + " one more sentence here", corpus.texts[1][: len(corpus.texts[1]) // 2]]
    texts = corpus.texts[:400] + extra
    sets = [shingle_set(t) for t in texts]
    brute = {(a, b) for a, b in itertools.combinations(range(len(texts)), 2) if jaccard(sets[a], sets[b]) >= 0.8}
    found = exact_duplicate_pairs(texts, 0.8)
    assert {(a, b) for a, b, _ in found} == brute and len(brute) >= 5
    for a, b, similarity in found:
        assert abs(similarity - jaccard(sets[a], sets[b])) < 1e-9


def test_score_dedup():
    truth = [(0, 1), (0, 2), (1, 2), (5, 6)]
    scores = score_dedup([[0, 1, 2, 3]], truth)  # 3 chained in: 3 of 6 cluster pairs wrong; (5, 6) left
    assert scores.cluster_pair_precision == 0.5 and scores.cluster_pair_recall == 0.75
    assert scores.removal_precision == 2 / 3 and scores.residual_pairs == 1


def test_several_copies_of_one_original(sentences):
    corpus = near_duplicate_corpus(sentences, 300, duplicate_fraction=0.3, seed=5, max_copies=3, max_words=150)
    copies_of: dict[int, int] = {}
    for original, _, _ in corpus.pairs:
        copies_of[original] = copies_of.get(original, 0) + 1
    assert len(corpus.pairs) == 90 and max(copies_of.values()) == 3 and min(copies_of.values()) >= 1
    sets = [shingle_set(t) for t in corpus.texts]
    for original, copy, similarity in corpus.pairs:
        assert abs(jaccard(sets[original], sets[copy]) - similarity) < 1e-9
    assert not set(copies_of) & {copy for _, copy, _ in corpus.pairs}, "copies are made of originals only"
