"""The bucket step emits every pair a band proves, so verification cannot cut true duplicates apart;
and the two ways of clustering the verified pairs.

Four documents share one LSH bucket: 0, 2 and 3 hold a common core plus text of their own, 1 is
the core alone, and 3 is the core plus one word. Only (1, 3) is a true duplicate pair; every other
pair is below the threshold. A bucket step that pairs each member only with the bucket's first
member and its predecessor emits (0,1) (0,2) (1,2) (0,3) (2,3), all rejected by verification, and
never (1, 3): document 3 then survives next to its duplicate.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from dedup_helpers import minhash_recipe, read_ids, read_records, run_recipe, write_shards

from llm_dedup.clustering import component_keepers, keep_rank, star_keepers, union_find_clusters
from llm_dedup.evaluation import jaccard, shingle_set
from llm_dedup.minhash import MinHasher, band_keys, bucket_pairs
from llm_dedup.shingles import shingle_sets

NUM_PERM, BANDS, ROWS = 8, 2, 1  # two one-row bands (the stage takes at least 8 permutations)


def _words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


CORE = _words("core", 44)  # 40 word 5-grams
DOCS = [CORE + " " + _words("left", 14),   # 0: core + 14 shingles of its own: Jaccard 0.74 to 1
        CORE,                              # 1: the core
        CORE + " " + _words("right", 14),  # 2: like 0, other words
        CORE + " extra"]                   # 3: the core + one shingle: Jaccard 40/41 to 1


def _bucket_layout_seed() -> int:
    """A permutation seed under which all four documents share a bucket in some band, and 1 and 3
    never share one without 0 and 2 (so no bucket has 1 first, or 1 just before 3)."""
    sets = shingle_sets(DOCS, "word", 5)
    for seed in range(1, 1000):
        signatures = MinHasher(BANDS * ROWS, seed).signatures(sets)  # as the stage computes them
        keys = [band_keys(signatures, band, ROWS) for band in range(BANDS)]
        together = [len(set(k.tolist())) == 1 for k in keys]
        alone = [k[1] == k[3] and not (k[0] == k[1] == k[2]) for k in keys]
        if any(together) and not any(alone):
            return seed
    raise AssertionError("no seed puts the four documents in one bucket")


def test_the_documents_are_what_the_test_needs():
    shingles = [shingle_set(d) for d in DOCS]
    assert jaccard(shingles[1], shingles[3]) >= 0.8
    for a, b in [(0, 1), (0, 2), (1, 2), (0, 3), (2, 3)]:
        assert jaccard(shingles[a], shingles[b]) < 0.8, (a, b)


def test_bucket_pairs_are_all_pairs_of_a_bucket():
    keys = np.array([7, 7, 7, 7, 9, 9, 5], dtype=np.uint64)
    rows = np.array([10, 11, 12, 13, 20, 21, 30], dtype=np.int64)
    pairs, sizes, capped = bucket_pairs(keys, rows, max_bucket_size=100)
    assert sorted(map(tuple, pairs.tolist())) == [(10, 11), (10, 12), (10, 13), (11, 12), (11, 13), (12, 13),
                                                  (20, 21)]
    assert sorted(sizes.tolist()) == [2, 4] and capped == {"buckets": 0, "pairs_not_emitted": 0}


def test_a_huge_bucket_pairs_each_member_with_the_cap_before_it():
    keys = np.zeros(6, dtype=np.uint64)
    pairs, _, capped = bucket_pairs(keys, np.arange(6, dtype=np.int64), max_bucket_size=3)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4),
                                                  (3, 5), (4, 5)]
    assert capped == {"buckets": 1, "pairs_not_emitted": 15 - 9}


def test_a_true_pair_behind_rejected_chain_edges_is_found(host, tmp_path):
    folder = write_shards(tmp_path / "in", DOCS, 1)
    recipe = minhash_recipe(str(folder), num_perm=NUM_PERM, bands=BANDS, rows=ROWS,
                            hash_seed=_bucket_layout_seed(), threshold=0.8)
    run_recipe(host, recipe, tmp_path / "run")
    buckets = json.loads((tmp_path / "run" / "buckets" / "report.json").read_text())
    assert "4" in buckets["bucket_size_histogram"], "the four documents shared a bucket"
    dropped = read_records(tmp_path / "run" / "dedup" / "dropped")
    assert [(d["id"], d["metadata"]["duplicate_of"]) for d in dropped] == [("doc-3", "doc-1")]
    assert read_ids(tmp_path / "run" / "dedup" / "kept") == ["doc-0", "doc-1", "doc-2"]


# -- chaining: components against star ---------------------------------------------------------

CHAIN_CORE = _words("chain", 64)  # 60 word 5-grams
CHAIN = [" ".join(CHAIN_CORE.split()[7:]),   # 0: the core without its first 7 words (53 shingles)
         CHAIN_CORE,                         # 1: the core: Jaccard 53/60 = 0.88 to 0 and to 2
         " ".join(CHAIN_CORE.split()[:-7])]  # 2: without its last 7 words: 46/60 = 0.77 to 0


def test_components_chain_and_star_does_not(host, tmp_path):
    shingles = [shingle_set(d) for d in CHAIN]
    assert jaccard(shingles[0], shingles[1]) >= 0.8 and jaccard(shingles[1], shingles[2]) >= 0.8
    assert jaccard(shingles[0], shingles[2]) < 0.8
    folder = write_shards(tmp_path / "in", CHAIN, 1)
    removed = {}
    for mode in ("components", "star"):
        root = tmp_path / mode
        run_recipe(host, minhash_recipe(str(folder)), root, [f"stages.clusters.clustering={mode}"])
        removed[mode] = sorted((d["id"], d["metadata"]["duplicate_of"])
                               for d in read_records(root / "dedup" / "dropped"))
        report = json.loads((root / "clusters" / "report.json").read_text())
        removed[mode + " below"] = report["removed_below_threshold_to_kept"]
        removed[mode + " precision"] = report["cluster_pair_precision"]
    assert removed["components"] == [("doc-1", "doc-0"), ("doc-2", "doc-0")]
    assert removed["components below"] == 1 and removed["components precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert removed["star"] == [("doc-1", "doc-0")], "doc-2's only duplicate was removed: it stays"
    assert removed["star below"] == 0 and removed["star precision"] == 1.0


def test_star_keepers_follow_keep_order():
    edges = np.array([[0, 1], [1, 2], [2, 3], [0, 4]])
    assert star_keepers(5, edges, keep_rank(5, None)).tolist() == [0, 0, 2, 2, 0]
    scores = np.array([0.1, 0.9, 0.5, np.nan, 0.2])  # keep order 1, 2, 4, 0, 3
    # 2 and 0 go for 1; 4 stays (its one duplicate, 0, comes later); 3's one duplicate, 2, was removed
    assert star_keepers(5, edges, keep_rank(5, scores)).tolist() == [1, 1, 1, 3, 4]
    labels = union_find_clusters(5, edges)
    assert component_keepers(labels, keep_rank(5, scores)).tolist() == [1] * 5
