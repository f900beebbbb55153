"""The four MinHash stages on real text with injected near-duplicates: accuracy against exact
Jaccard with verification on and off, outputs, reports, rejects and keep-by-score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dedup_helpers import minhash_recipe, read_ids, read_records, run_recipe, write_shards

from llm_dedup.evaluation import cluster_pairs, score_pairs

BANDS = {"bands": 20, "rows": 6}  # an S-curve that catches nearly every pair at 0.8: recall first


def _clusters(records: list[dict]) -> list[set[int]]:
    """Predicted clusters from the dropped documents' ``duplicate_of`` (ids are doc-<row>)."""
    clusters: dict[int, set[int]] = {}
    for r in records:
        keeper = int(r["metadata"]["duplicate_of"].split("-")[1])
        clusters.setdefault(keeper, {keeper}).add(int(r["id"].split("-")[1]))
    return list(clusters.values())


@pytest.fixture(scope="module")
def verified_and_unverified(corpus, corpus_dir, tmp_path_factory):
    from llm_core.plugins import get_host, reset_host

    reset_host()
    host = get_host()
    root = tmp_path_factory.mktemp("minhash")
    recipe = minhash_recipe(str(corpus_dir), **BANDS)
    run_recipe(host, recipe, root / "on")
    run_recipe(host, recipe, root / "off", ["stages.clusters.verify=false"])
    reset_host()
    return root / "on", root / "off"


def test_precision_and_recall_with_and_without_verification(corpus, verified_and_unverified):
    on, off = verified_and_unverified
    truth = [p for p in corpus.pairs]
    scores = {name: score_pairs(cluster_pairs(_clusters(read_records(root / "dedup" / "dropped"))),
                                corpus.texts, truth, 0.8) for name, root in (("on", on), ("off", off))}
    print({k: vars(v) for k, v in scores.items()})
    assert scores["on"].true_pairs >= 150, "the corpus must hold enough true pairs to measure"
    assert scores["on"].precision >= 0.99 and scores["on"].recall >= 0.95
    assert scores["off"].precision < 0.99, "without verification LSH lets pairs below 0.8 through"
    assert scores["off"].recall >= scores["on"].recall


def test_every_document_lands_once_and_first_is_kept(corpus, verified_and_unverified):
    on, _ = verified_and_unverified
    kept, dropped = read_ids(on / "dedup" / "kept"), read_records(on / "dedup" / "dropped")
    assert sorted(kept + [d["id"] for d in dropped]) == sorted(f"doc-{i}" for i in range(len(corpus.texts)))
    for record in dropped:
        assert record["metadata"]["drop_reason"] == "near_duplicate"
        keeper = record["metadata"]["duplicate_of"]
        assert keeper in kept and int(keeper.split("-")[1]) < int(record["id"].split("-")[1])


def test_parameters_name_the_outputs_and_reports_are_written(verified_and_unverified):
    on, _ = verified_and_unverified
    tag = "word5-p128-b20x6-s1"
    assert (on / "signatures" / tag / "shard-00000.signatures.npy").exists()
    assert list((on / "buckets" / tag).glob("pairs-bands-*.npy"))
    assert (on / "clusters" / f"{tag}-verified" / "removed.npy").exists()
    for stage in ("signatures", "buckets", "clusters", "dedup"):
        assert json.loads((on / stage / "report.json").read_text())["charts"]
        assert not (on / stage / "report.png").exists(), "stages draw nothing: dedup_charts does"
    report = json.loads((on / "clusters" / "report.json").read_text())
    assert report["rejected_by_verification"] > 0 and report["cluster_size_histogram"]
    assert report["candidates_per_doc"] == round(report["candidate_pairs"] / report["docs"], 4)
    assert 0.99 <= report["cluster_pair_precision"] <= 1.0 and report["removed_below_threshold_to_kept"] <= 2
    example = report["examples"][0]
    assert example["jaccard"] >= 0.8 and example["removed"]["text"] and example["kept"]["id"]


def test_charts_stage_draws_the_reports_it_is_given(host, verified_and_unverified, tmp_path):
    on, _ = verified_and_unverified
    recipe = {"name": "charts", "executor": {"kind": "local", "workers": 1},
              "stages": [{"name": "charts", "kind": "dedup_charts",
                          "inputs": {stage: str(on / stage) for stage in ("buckets", "clusters")}}]}
    run_recipe(host, recipe, tmp_path)
    for stage in ("buckets", "clusters"):
        assert (tmp_path / "charts" / f"{stage}.png").read_bytes()[:4] == b"\x89PNG"


def test_malformed_lines_are_rejected_with_file_and_line(host, tmp_path):
    texts = ["alpha beta gamma delta epsilon zeta eta theta"] * 3 + ["iota kappa lambda mu nu xi omicron pi"]
    folder = write_shards(tmp_path / "in", texts, 2, extra_lines={1: "{not json"})
    with (tmp_path / "in" / "part-0.jsonl").open("a") as handle:
        handle.write(json.dumps({"id": "no-text"}) + "\n")
    run_recipe(host, minhash_recipe(str(folder)), tmp_path / "run")
    rejects = [json.loads(line) for f in sorted((tmp_path / "run" / "dedup" / "rejects").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert [(r["source"].rsplit("/", 1)[1], r["line"]) for r in rejects] == [("part-0.jsonl", 3), ("part-1.jsonl", 2)]
    assert "missing field 'text'" in rejects[0]["error"]
    assert sorted(read_ids(tmp_path / "run" / "dedup" / "kept")) == ["doc-0", "doc-3"]
    metrics = json.loads((tmp_path / "run" / "dedup" / "manifest.json").read_text())["metrics"]
    assert metrics == {"kept": 2, "dropped": 2, "rejects": 2}


def test_keep_best_score(host, tmp_path):
    text = "one two three four five six seven eight nine ten eleven twelve"
    folder = tmp_path / "in"
    folder.mkdir()
    rows = [{"id": "low", "text": text, "quality": 0.1}, {"id": "high", "text": text + " thirteen", "quality": 0.9},
            {"id": "none", "text": text}]
    (folder / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    recipe = minhash_recipe(str(folder), score_key="quality", threshold=0.5)
    run_recipe(host, recipe, tmp_path / "run", ["stages.clusters.keep=best_score"])
    assert read_ids(tmp_path / "run" / "dedup" / "kept") == ["high"]


def test_bands_and_rows_are_checked():
    from llm_dedup.params import MinHashOptions, MinHashParams

    with pytest.raises(ValueError, match="both 'bands' and 'rows'"):
        MinHashOptions(bands=10)
    with pytest.raises(ValueError, match="exceeds num_perm"):
        MinHashOptions(bands=20, rows=9, num_perm=128)
    params = MinHashParams.resolve(MinHashOptions(), stage_seed=4)
    assert (params.bands, params.rows, params.seed) == (16, 6, 4) and params.tag == "word5-p128-b16x6-s4"
    assert np.isclose(params.threshold, 0.8)
    weighted = MinHashParams.resolve(MinHashOptions(band_search="weighted_errors"), stage_seed=4)
    assert (weighted.bands, weighted.rows) == (16, 8)
    normalized = MinHashParams.resolve(MinHashOptions(numbers="zero", accents="strip"), stage_seed=1)
    assert normalized.tag == "word5-num0-noaccent-p128-b16x6-s1"
