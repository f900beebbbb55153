"""Exact dedup: normalization options, the first occurrence kept, hash and Bloom modes agree, the
Bloom filter's state carried across shards and a resumed run."""

from __future__ import annotations

import json

import pytest
from dedup_helpers import read_ids, read_records, run_recipe, write_shards

from llm_dedup.exact import Normalization, first_occurrences, text_hash

TEXTS = ["Hello,  World! 2024", "hello world 2024", "HELLO, WORLD! 1999", "Ｈｅｌｌｏ, World! 2024",
         "something else", "Something else.", "something else", "unique text"]


def _recipe(folder, mode="hash", **options):
    return {"name": "exact", "executor": {"kind": "local", "workers": 1},
            "stages": [{"name": "exact", "kind": "exact_dedup", "inputs": {"documents": str(folder)},
                        "mode": mode, **options}]}


def test_normalization_steps():
    assert Normalization()("  Ｈｅｌｌｏ,\n World!  ") == "hello, world!"
    assert Normalization(punctuation=True, digits=True)("Hello, World! 2024") == "hello world 0000"
    assert Normalization(lowercase=False, whitespace=False, unicode=False)("A  b") == "A  b"
    assert text_hash("a") != text_hash("b") and text_hash("a") == text_hash("a")


def test_first_occurrences():
    hashes = [text_hash(t) for t in ["a", "b", "a", "c", "b", "a"]]
    import numpy as np

    assert first_occurrences(np.array(hashes, dtype=np.uint64)).tolist() == [0, 1, 0, 3, 1, 0]


@pytest.mark.parametrize("options,kept", [
    ({}, ["doc-0", "doc-1", "doc-2", "doc-4", "doc-5", "doc-7"]),  # case, spacing and NFKC fold
    ({"punctuation": True}, ["doc-0", "doc-2", "doc-4", "doc-7"]),
    ({"punctuation": True, "digits": True}, ["doc-0", "doc-4", "doc-7"]),
])
def test_hash_mode_keeps_first_occurrence(host, tmp_path, options, kept):
    folder = write_shards(tmp_path / "in", TEXTS, 3)
    run_recipe(host, _recipe(folder, **options), tmp_path / "run")
    assert sorted(read_ids(tmp_path / "run" / "exact" / "kept")) == kept
    for record in read_records(tmp_path / "run" / "exact" / "dropped"):
        assert record["metadata"]["drop_reason"] == "exact_duplicate"
        assert record["metadata"]["duplicate_of"] in kept
    report = json.loads((tmp_path / "run" / "exact" / "report.json").read_text())
    assert report["dropped"] == len(TEXTS) - len(kept)
    assert report["charts"], "the chart data is in the report; dedup_charts draws it"


def test_bloom_mode_agrees_with_hash_mode_and_states_its_error_rate(host, corpus, tmp_path):
    texts = corpus.texts[:1500] + corpus.texts[:300]  # 300 exact copies, across shards
    folder = write_shards(tmp_path / "in", texts, 4, extra_lines={2: "not json"})
    run_recipe(host, _recipe(folder), tmp_path / "hash")
    run_recipe(host, _recipe(folder, "bloom", bloom_capacity=10_000, bloom_error_rate=1e-4), tmp_path / "bloom")
    for part in ("kept", "dropped"):
        assert read_ids(tmp_path / "bloom" / "exact" / part) == read_ids(tmp_path / "hash" / "exact" / part)
    report = json.loads((tmp_path / "bloom" / "exact" / "report.json").read_text())
    assert report["dropped"] >= 300 and report["rejects"] == 1
    bloom = report["bloom"]
    assert bloom["configured_false_positive_rate"] == 1e-4 and not bloom["over_capacity"]
    assert 0 < bloom["expected_false_positive_rate"] < 1e-4
    assert len(list((tmp_path / "bloom" / "exact" / "bloom").iterdir())) == 1, "only the latest state is kept"


def test_bloom_mode_resumes_from_the_saved_state(host, tmp_path, monkeypatch):
    from llm_dedup import exact

    folder = write_shards(tmp_path / "in", TEXTS, 4)
    run_recipe(host, _recipe(folder, "bloom", bloom_capacity=1000), tmp_path / "uninterrupted")
    real_split = exact.split_shard

    def crash_on_last_shard(source, *args, **kwargs):
        if source.shard_id == "shard-00003":
            raise KeyboardInterrupt("killed")
        return real_split(source, *args, **kwargs)

    monkeypatch.setattr(exact, "split_shard", crash_on_last_shard)
    root = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_recipe(host, _recipe(folder, "bloom", bloom_capacity=1000), root)
    assert (root / "exact" / "bloom" / "after-shard-00002.bin").exists()
    assert not (root / "exact" / "kept" / "shard-00003.jsonl.gz").exists()
    monkeypatch.setattr(exact, "split_shard", real_split)
    run_recipe(host, _recipe(folder, "bloom", bloom_capacity=1000), root)
    for part in ("kept", "dropped"):
        assert read_ids(root / "exact" / part) == read_ids(tmp_path / "uninterrupted" / "exact" / part)


def test_near_duplicate_text_stage_writes_corpus_and_truth(host, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(f"sentence number {i} talks about topic {i * 7 % 13} and more words here"
                                   for i in range(300)))
    recipe = {"name": "corpus", "seed": 5, "executor": {"kind": "local", "workers": 1},
              "stages": [{"name": "generate", "kind": "near_duplicate_text", "num_docs": 40, "num_shards": 2,
                          "duplicate_fraction": 0.25, "min_words": 30, "max_words": 60, "max_copies": 2,
                          "sentences": str(sentences)}]}
    run_recipe(host, recipe, tmp_path / "run")
    docs = {}
    for f in sorted((tmp_path / "run" / "generate" / "documents").glob("*.jsonl")):
        docs.update((r["id"], r["text"]) for r in map(json.loads, f.read_text().splitlines()))
    truth = [json.loads(line) for line in (tmp_path / "run" / "generate" / "truth.jsonl").read_text().splitlines()]
    assert len(docs) == 40 and len(truth) == 10
    assert len({pair["original"] for pair in truth}) < 10, "some original got two copies"
    from llm_dedup.evaluation import jaccard, shingle_set

    for pair in truth:
        exact = jaccard(shingle_set(docs[pair["original"]]), shingle_set(docs[pair["near_duplicate"]]))
        # The last edit may overshoot the drawn target a little (short documents: by up to ~0.1).
        assert abs(exact - pair["jaccard"]) < 1e-6 and 0.35 <= exact <= 1.0
