"""A run killed with SIGKILL in the middle of a sharded stage resumes without loss or duplicates."""

from __future__ import annotations

import gzip
import json
import subprocess
import textwrap
from pathlib import Path

from llm_core.testing import kill_run_after_shards, run_command

SHARDS = 24

RECIPE = textwrap.dedent("""
    name = "kill-me"
    [executor]
    kind = "local"
    workers = WORKERS
    [[stages]]
    name = "generate"
    kind = "synthetic_text"
    num_docs = DOCS
    num_shards = SHARDS
    [[stages]]
    name = "clean"
    kind = "filter"
    inputs = { documents = "generate/documents" }
    steps = [
      { filter = "length", options = { min_chars = 80 } },
      { filter = "regex", options = { pattern = "river" } },
    ]
    """).replace("DOCS", str(SHARDS * 3000)).replace("SHARDS", str(SHARDS))


def _ids(folder: Path) -> list[str]:
    ids = []
    for f in sorted(folder.glob("*.jsonl.gz")):
        ids += [json.loads(line)["id"] for line in gzip.open(f, "rt")]
    return ids


def test_sigkill_mid_stage_then_resume(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.replace("WORKERS", "2"))
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    done_at_kill = kill_run_after_shards(recipe, killed, "clean", 2)
    assert 2 <= done_at_kill < SHARDS, "the kill must land in the middle of the sharded stage"
    assert (killed / "clean" / "manifest.json").exists()
    assert json.loads((killed / "clean" / "manifest.json").read_text())["status"] == "running"

    resumed = subprocess.run(run_command(recipe, killed), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "already complete, skipped" in resumed.stderr
    subprocess.run(run_command(recipe, clean), check=True, capture_output=True, timeout=300)

    for part in ("kept", "dropped"):
        files = sorted(p.name for p in (killed / "clean" / part).iterdir())
        assert len(files) == SHARDS and not any(".tmp-" in f for f in files)
        ids = _ids(killed / "clean" / part)
        assert len(ids) == len(set(ids)), f"duplicates in {part}"
        assert ids == _ids(clean / "clean" / part), f"{part} differs from an uninterrupted run"
    total = len(_ids(killed / "clean" / "kept")) + len(_ids(killed / "clean" / "dropped"))
    assert total == SHARDS * 3000
    assert not [p for p in killed.rglob("*") if ".tmp-" in p.name]
