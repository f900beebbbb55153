"""The package registers through the ``llmt`` entry point, and the same MinHash stages run on a
real local Ray instance with the result of the local executor."""

from __future__ import annotations

import pytest
from dedup_helpers import minhash_recipe, read_ids, run_recipe, write_shards

STAGES = {"near_duplicate_text", "exact_dedup", "minhash_signatures", "minhash_buckets", "minhash_clusters",
          "minhash_filter",
          "semdedup"}


def test_entry_point_registers_every_stage(host):
    plugins = {p.name: p for p in host.plugins}
    assert "dedup" in plugins and not plugins["dedup"].error
    for name in STAGES:
        entry = host.registries.stages.get(name)
        assert entry.plugin == "dedup" and entry.summary


def test_import_stays_light():
    import subprocess
    import sys

    heavy = "('numpy', 'torch', 'sentence_transformers', 'sklearn')"
    code = f"import sys, llm_dedup.hooks; print(any(m in sys.modules for m in {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow  # starting Ray takes one to two minutes on a busy two-core machine
def test_minhash_on_ray_matches_local(host, corpus, tmp_path):
    pytest.importorskip("ray")
    folder = write_shards(tmp_path / "in", corpus.texts[:1200], 3)
    recipe = minhash_recipe(str(folder), bands=20, rows=6)
    run_recipe(host, recipe, tmp_path / "local")
    ray_recipe = {**recipe, "executor": {"kind": "ray", "num_cpus": 2}}
    run_recipe(host, ray_recipe, tmp_path / "ray")
    for part in ("kept", "dropped"):
        assert read_ids(tmp_path / "ray" / "dedup" / part) == read_ids(tmp_path / "local" / "dedup" / part)
    assert read_ids(tmp_path / "ray" / "dedup" / "dropped")
