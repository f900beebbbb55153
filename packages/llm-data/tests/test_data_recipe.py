"""The data-quality recipe end to end on the real noisy corpus; resume; rejects; Parquet input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from llm_core.config import apply_overrides, load_recipe_file, validate_recipe
from llm_core.plugins import get_host
from llm_core.runner import PipelineRunner

RECIPE = Path(__file__).parents[3] / "integration" / "recipes" / "data-quality.toml"


def run(data: dict, root: Path):
    host = get_host()
    recipe = validate_recipe(data, host.registries, host)
    return PipelineRunner(recipe, str(root), host).run()


def quality_recipe(*overrides: str) -> dict:
    return apply_overrides(load_recipe_file(RECIPE), ["executor.workers=1", *overrides])


def read_jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl.gz")) for line in gzip.open(f, "rt")]


def test_quality_chain_on_noisy_wikipedia(tmp_path):
    pytest.importorskip("gensim")
    data = quality_recipe()
    data["stages"] = [s for s in data["stages"] if s["name"] != "tokens"]
    run(data, tmp_path)
    report = json.loads((tmp_path / "clean" / "report.json").read_text())
    kept, dropped = read_jsonl(tmp_path / "clean" / "kept"), read_jsonl(tmp_path / "clean" / "dropped")
    assert report["docs"] == len(kept) + len(dropped) == 580 and report["rejects"] == 0
    # every kind of injected noise is caught by the filter aimed at it
    caught = {d["metadata"]["noise"]: d["metadata"]["drop_reason"] for d in dropped}
    assert caught["spam_url"].startswith("url_filter:")
    assert caught["other_language"].startswith("language_id:")
    assert caught["repeated_lines"].startswith("gopher_repetition:")
    assert caught["hashtags"] == "gopher_quality:too_many_hashes"
    assert caught["bullet_list"] == "gopher_quality:too_many_bullet_lines"
    assert caught["toxic"] == "toxicity:word_list"
    noise_kept = [d for d in kept if d["metadata"]["noise"] not in ("none", "boilerplate")]
    assert len(noise_kept) <= 2
    clean_total = sum(1 for d in kept + dropped if d["metadata"]["noise"] == "none")
    assert sum(1 for d in kept if d["metadata"]["noise"] == "none") / clean_total > 0.9
    # planted PII is redacted in kept documents, and counted
    planted = [d for d in kept if d["metadata"].get("planted_pii")]
    assert planted and all("<EMAIL>" in d["text"] and "<CREDIT_CARD>" in d["text"] for d in planted)
    toxic_dropped = sum(1 for d in dropped if d["metadata"]["drop_reason"] == "toxicity:word_list")
    assert report["domains"]["noise"]["toxicity:word_list"] == toxic_dropped
    assert set(report["domains"]) == {"wikipedia", "news", "noise"}


def test_filter_stage_reads_parquet_and_writes_rejects(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    prose = ("The old town lies by the river and the market square is full of people with their "
             "children on a sunny day in the summer. ") * 8
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(pa.table({"text": [prose, None, "too short"], "url": ["https://a.org/1", "x", "https://b.org"]}),
                   src / "part-0.parquet")
    (src / "part-1.jsonl").write_text(json.dumps({"text": prose, "url": "https://www.pornhub.com/x"}) + "\n{bad\n")
    data = {"name": "t", "executor": {"kind": "local", "workers": 1}, "stages": [{
        "name": "clean", "kind": "filter", "inputs": {"documents": str(src)},
        "steps": [{"filter": "url_filter"}, {"filter": "gopher_quality"}, {"transform": "pii"}]}]}
    run(data, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "clean" / "report.json").read_text())
    assert report["kept"] == 1 and report["rejects"] == 2
    assert report["dropped_by_reason"] == {"url_filter:blocked_domain": 1, "gopher_quality:too_few_words": 1}
    rejects = [json.loads(line) for f in (tmp_path / "run" / "clean" / "rejects").glob("*.jsonl")
               for line in f.read_text().splitlines()]
    assert sorted((Path(r["source"]).name, r["line"]) for r in rejects) == [("part-0.parquet", 2),
                                                                            ("part-1.jsonl", 2)]


def test_resume_skips_finished_shards(tmp_path):
    pytest.importorskip("gensim")
    data = quality_recipe("stages.corpus.num_shards=3")
    data["stages"] = [s for s in data["stages"] if s["name"] in ("corpus", "clean")]
    run(data, tmp_path)
    markers = sorted((tmp_path / "clean" / "_shards").glob("*.json"))
    assert len(markers) == 3
    # simulate a kill after two shards: drop one marker and its outputs, then run again
    markers[1].unlink()
    (tmp_path / "clean" / "manifest.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "clean" / "kept").iterdir()}
    run(data, tmp_path)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "clean" / "kept").iterdir()}
    changed = [name for name in before if before[name] != after[name]]
    assert changed == ["shard-00001.jsonl.gz"]


@pytest.mark.slow
def test_quality_chain_on_a_local_ray_cluster(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("gensim")
    data = quality_recipe("stages.corpus.num_shards=2")
    data["executor"] = {"kind": "ray", "num_cpus": 2}
    data["stages"] = [s for s in data["stages"] if s["name"] in ("corpus", "clean")]
    run(data, tmp_path)
    report = json.loads((tmp_path / "clean" / "report.json").read_text())
    assert report["docs"] == 580 and len(report["shards"]) == 2 and report["kept"] > 350
