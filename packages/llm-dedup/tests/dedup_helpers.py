"""Helpers of llm-dedup's tests: shard writing, in-process recipe runs, reading outputs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from llm_core.config import apply_overrides, validate_recipe
from llm_core.runner import PipelineRunner


def write_shards(folder: Path, texts: list[str], shards: int, extra_lines: dict[int, str] | None = None) -> Path:
    """JSONL shards with ids ``doc-<row>``; ``extra_lines`` puts raw lines into shard files."""
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // shards)
    for k in range(shards):
        rows = range(k * per, min(len(texts), (k + 1) * per))
        lines = [json.dumps({"id": f"doc-{i}", "text": texts[i]}) for i in rows]
        if extra_lines and k in extra_lines:
            lines.insert(len(lines) // 2, extra_lines[k])
        (folder / f"part-{k}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def run_recipe(host, recipe: dict[str, Any], root: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    resolved = validate_recipe(apply_overrides(recipe, list(overrides)), host.registries, host)
    return PipelineRunner(resolved, str(root), host).run()


def minhash_recipe(documents: str, workers: int = 1, **signature_options: Any) -> dict[str, Any]:
    """The four MinHash stages over ``documents``."""
    return {"name": "minhash", "seed": 1, "executor": {"kind": "local", "workers": workers},
            "stages": [
                {"name": "signatures", "kind": "minhash_signatures", "inputs": {"documents": documents},
                 **signature_options},
                {"name": "buckets", "kind": "minhash_buckets", "inputs": {"signatures": "signatures"}},
                {"name": "clusters", "kind": "minhash_clusters",
                 "inputs": {"signatures": "signatures", "buckets": "buckets"}},
                {"name": "dedup", "kind": "minhash_filter",
                 "inputs": {"signatures": "signatures", "clusters": "clusters"}}]}


def read_ids(folder: Path) -> list[str]:
    ids = []
    for f in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as handle:
            ids += [json.loads(line)["id"] for line in handle]
    return ids


def read_records(folder: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as handle:
            out += [json.loads(line) for line in handle]
    return out
