"""The main job end to end (slow: minutes): ``tiny-r1`` from nothing, judged on its own criteria."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

RECIPE = Path(__file__).parents[3] / "integration" / "recipes" / "tiny-r1.toml"


@pytest.mark.slow
def test_tiny_r1_meets_its_acceptance_criteria(tmp_path):
    from llm_core.config import load_recipe_file, validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    start = time.monotonic()
    PipelineRunner(recipe, str(tmp_path), host).run()
    minutes = (time.monotonic() - start) / 60
    results = json.loads((tmp_path / "eval/results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert all(r["n"] >= 500 for r in rows.values())
    grpo_vs_sft = next(c for c in results["comparisons"] if c["candidate"] == "grpo")
    assert grpo_vs_sft["beyond_intervals"], results
    assert (tmp_path / "eval/curves.png").read_bytes().startswith(b"\x89PNG")
    assert minutes < 10, f"took {minutes:.1f} minutes"
