"""The same sharded data step on a real local Ray instance (2 CPUs) and on the local pool."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from llm_core.config import validate_recipe
from llm_core.runner import PipelineRunner

ray = pytest.importorskip("ray", reason="the ray executor needs llm-core[ray]")


def _recipe(executor: dict) -> dict:
    return {"name": "ray-vs-local", "executor": executor, "stages": [
        {"name": "generate", "kind": "synthetic_text", "num_docs": 4000, "num_shards": 4},
        {"name": "clean", "kind": "filter", "inputs": {"documents": "generate/documents"},
         "steps": [{"filter": "length", "options": {"min_chars": 80}}]},
    ]}


def _kept(root: Path) -> dict[str, bytes]:
    return {p.name: gzip.decompress(p.read_bytes()) for p in sorted((root / "clean" / "kept").iterdir())}


def test_ray_executor_gives_the_same_outputs_as_local(host, tmp_path):
    local = validate_recipe(_recipe({"kind": "local", "workers": 2}), host.registries, host)
    PipelineRunner(local, str(tmp_path / "local"), host).run()
    on_ray = validate_recipe(_recipe({"kind": "ray", "num_cpus": 2}), host.registries, host)
    try:
        results = PipelineRunner(on_ray, str(tmp_path / "ray"), host).run()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert results["clean"].metrics["docs"] == 4000
    assert _kept(tmp_path / "ray") == _kept(tmp_path / "local")
    assert len(_kept(tmp_path / "ray")) == 4
