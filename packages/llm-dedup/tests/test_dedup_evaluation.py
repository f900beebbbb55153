"""The benchmark's ground truth: every pair at or above the threshold, found exactly, and the scores."""

from __future__ import annotations

import itertools

from llm_dedup.evaluation import exact_duplicate_pairs, jaccard, score_dedup, shingle_set


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
