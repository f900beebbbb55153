from __future__ import annotations

import json

import fsspec
import pytest

from llm_core import artifacts
from llm_core.config import apply_overrides, validate_recipe
from llm_core.runner import PipelineRunner

RECIPE = {
    "name": "pipe",
    "executor": {"kind": "local", "workers": 1},  # memory:// is per process
    "stages": [
        {"name": "generate", "kind": "synthetic_text", "num_docs": 300, "num_shards": 3},
        {"name": "clean", "kind": "filter", "inputs": {"documents": "generate/documents"},
         "steps": [{"filter": "length", "options": {"min_chars": 80}}]},
        {"name": "strict", "kind": "filter", "inputs": {"documents": "clean/kept"},
         "steps": [{"filter": "regex", "options": {"pattern": "river"}}]},
    ],
}


def _run(host, root, overrides=()):
    recipe = validate_recipe(apply_overrides(RECIPE, list(overrides)), host.registries, host)
    return PipelineRunner(recipe, root, host).run()


def _read_jsonl(uri):
    fs, path = fsspec.core.url_to_fs(uri)
    out = []
    for f in sorted(fs.find(path)):
        with fsspec.open(f"memory://{f}" if uri.startswith("memory://") else f, "rt", compression="infer") as h:
            out += [json.loads(line) for line in h]
    return out


def test_run_writes_artifacts_manifests_and_metrics(host, memory_root):
    results = _run(host, memory_root)
    assert set(results) == {"generate", "clean", "strict"}
    store = artifacts.RunStore(memory_root)
    manifest = store.read_manifest("clean")
    assert manifest["status"] == "completed"
    assert manifest["inputs"]["documents"]["fingerprint"] == store.read_manifest("generate")["fingerprint"]
    assert manifest["versions"]["llm-core"]
    assert manifest["wall_time_s"] >= 0
    metrics = store.read_metrics("clean")[-1]
    kept = _read_jsonl(memory_root + "/clean/kept")
    dropped = _read_jsonl(memory_root + "/clean/dropped")
    assert metrics["kept"] == len(kept) and metrics["dropped"] == len(dropped)
    assert len(kept) + len(dropped) == 300
    assert all(len(d["text"]) >= 80 for d in kept)
    assert all(d["metadata"]["drop_reason"] == "length:too_short" for d in dropped)
    assert store.stages_on_disk() == ["generate", "clean", "strict"]


def test_rerun_skips_and_change_reruns_downstream(host, memory_root):
    _run(host, memory_root)
    again = _run(host, memory_root)
    assert again == {"generate": "skipped", "clean": "skipped", "strict": "skipped"}
    changed = _run(host, memory_root, ["stages.clean.steps=[{filter='length', options={min_chars=200}}]"])
    assert changed["generate"] == "skipped"
    assert changed["clean"] != "skipped" and changed["strict"] != "skipped"
    kept = _read_jsonl(memory_root + "/clean/kept")
    assert all(len(d["text"]) >= 200 for d in kept)


def test_failed_stage_is_recorded_and_rerun(host, memory_root, tmp_path):
    bad = dict(RECIPE, stages=[{"name": "clean", "kind": "filter",
                                "inputs": {"documents": str(tmp_path)},  # an empty folder
                                "steps": [{"filter": "length"}]}])
    recipe = validate_recipe(bad, host.registries, host)
    with pytest.raises(FileNotFoundError, match="no data files"):
        PipelineRunner(recipe, memory_root, host).run()
    manifest = artifacts.RunStore(memory_root).read_manifest("clean")
    assert manifest["status"] == "failed" and "no data files" in manifest["error"]


def test_malformed_lines_go_to_rejects_with_file_and_line(host, memory_root, tmp_path):
    source = tmp_path / "docs.jsonl"
    source.write_bytes(b'{"id": "a", "text": "' + b"x" * 100 + b'"}\n'
                       b'{not json}\n'
                       b'{"id": "c", "body": "no text field"}\n'
                       b'{"id": "d", "text": "\xff\xfe invalid utf-8"}\n'
                       b'{"id": "e", "text": "short"}\n')
    recipe = validate_recipe({"name": "rej", "executor": {"kind": "local", "workers": 1}, "stages": [
        {"name": "clean", "kind": "filter", "inputs": {"documents": str(source)},
         "steps": [{"filter": "length", "options": {"min_chars": 10}}]}]}, host.registries, host)
    result = PipelineRunner(recipe, memory_root, host).run()["clean"]
    assert result.metrics["kept"] == 1 and result.metrics["dropped"] == 1 and result.metrics["rejects"] == 3
    rejects = _read_jsonl(memory_root + "/clean/rejects")
    assert [r["line"] for r in rejects] == [2, 3, 4]
    assert all(r["source"] == str(source) for r in rejects)
    assert "missing field 'text'" in rejects[1]["error"]
    assert "\\xff" in rejects[2]["raw"]  # the raw bytes are kept, nothing the user gave is lost


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl.gz"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_open(str(target), "wt", compression="infer") as handle:
            handle.write("partial\n")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with artifacts.atomic_open(str(target), "wt", compression="infer") as handle:
        handle.write("whole\n")
    import gzip

    assert gzip.decompress(target.read_bytes()) == b"whole\n"


def test_only_runs_the_stage_and_what_it_reads_from_not_what_follows(host, tmp_path):
    recipe = validate_recipe(RECIPE, host.registries, host)
    root = str(tmp_path / "run")
    results = PipelineRunner(recipe, root, host).run(only=["clean"])
    assert results["strict"] == "not selected (--only)"
    store = artifacts.RunStore(root)
    assert store.read_manifest("generate")["status"] == "completed"  # needed by clean: run
    assert store.read_manifest("clean")["status"] == "completed"
    assert store.read_manifest("strict") is None  # downstream of clean: left alone


def test_only_with_an_unknown_stage_names_the_stages(host, tmp_path):
    from llm_core.config import with_upstream
    from llm_core.errors import RecipeError

    recipe = validate_recipe(RECIPE, host.registries, host)
    with pytest.raises(RecipeError, match=r"no stage named 'clen' \(stages: generate, clean, strict\)"):
        with_upstream(recipe, ["clen"])
