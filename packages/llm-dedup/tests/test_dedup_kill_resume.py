"""A MinHash run killed (SIGKILL) during the bucket step and re-run keeps exactly the documents an
uninterrupted run keeps."""

from __future__ import annotations

import json
import subprocess
import textwrap

from dedup_helpers import read_ids, write_shards

from llm_core.testing import kill_run_after_shards, run_command
from llm_dedup.evaluation import near_duplicate_corpus

BANDS = 32  # one shard per band: many small resumable tasks

RECIPE = textwrap.dedent("""
    name = "minhash-kill"
    seed = 3
    [executor]
    kind = "local"
    workers = 1
    [[stages]]
    name = "signatures"
    kind = "minhash_signatures"
    inputs = { documents = "DOCS" }
    num_perm = 128
    bands = BANDS
    rows = 4
    [[stages]]
    name = "buckets"
    kind = "minhash_buckets"
    inputs = { signatures = "signatures" }
    [[stages]]
    name = "clusters"
    kind = "minhash_clusters"
    inputs = { signatures = "signatures", buckets = "buckets" }
    [[stages]]
    name = "dedup"
    kind = "minhash_filter"
    inputs = { signatures = "signatures", clusters = "clusters" }
    """).replace("BANDS", str(BANDS))


def test_sigkill_during_bucket_step_then_resume(sentences, tmp_path):
    corpus = near_duplicate_corpus(sentences, 2_000, duplicate_fraction=0.2, seed=11)
    folder = write_shards(tmp_path / "docs", corpus.texts, 4)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.replace("DOCS", str(folder)))
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    done_at_kill = kill_run_after_shards(recipe, killed, "buckets", 3)
    assert 3 <= done_at_kill < BANDS, "the kill must land in the middle of the bucket step"
    manifest = json.loads((killed / "buckets" / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert not (killed / "clusters").exists()

    resumed = subprocess.run(run_command(recipe, killed), check=False, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "signatures: complete and unchanged, skipped" in resumed.stderr
    assert "already complete, skipped" in resumed.stderr  # the finished band shards
    subprocess.run(run_command(recipe, clean), check=True, capture_output=True, timeout=300)

    kept = read_ids(killed / "dedup" / "kept")
    assert kept == read_ids(clean / "dedup" / "kept")
    assert read_ids(killed / "dedup" / "dropped") == read_ids(clean / "dedup" / "dropped")
    assert len(kept) == len(set(kept)) and len(kept) < len(corpus.texts)
    assert not [p for p in killed.rglob("*") if ".tmp-" in p.name]
