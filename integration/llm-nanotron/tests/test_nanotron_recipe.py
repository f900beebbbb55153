"""tiny-r1 with its pretrain, cold-start SFT and GRPO stages on nanotron at TP=2 (slow: the whole
recipe, 2 worker processes). The overrides below are all that changes; README.md has the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.config import apply_overrides, load_recipe_file, validate_recipe

RECIPE = Path(__file__).parents[2] / "recipes" / "tiny-r1.toml"
ON_NANOTRON = [f"stages.{stage}.engine.{key}" for stage in ("pretrain", "cold_start", "grpo")
               for key in ("name=nanotron", "options.tp=2")] + ["stages.grpo.rollout.name=torch"]


def test_the_overrides_validate(registries):
    from llm_core.plugins import get_host

    recipe = validate_recipe(apply_overrides(load_recipe_file(RECIPE), ON_NANOTRON), registries, get_host())
    assert [s.name for s in recipe.stages][:4] == ["data", "pretrain", "cold_start", "grpo"]


@pytest.mark.slow
def test_tiny_r1_on_nanotron(tmp_path):
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    recipe = validate_recipe(apply_overrides(load_recipe_file(RECIPE), ON_NANOTRON), host.registries, host)
    PipelineRunner(recipe, str(tmp_path), host).run()
    for stage in ("pretrain", "cold_start", "grpo"):
        assert json.loads((tmp_path / stage / "checkpoint" / "llmt.json").read_text())["engine"] == "nanotron"
    results = json.loads((tmp_path / "eval/results.json").read_text())
    assert [r["name"] for r in results["rows"]] == ["cold_start", "grpo", "rs_sft", "final_rl"]
    grpo = next(c for c in results["comparisons"] if c["candidate"] == "grpo" and c["metric"] == "greedy")
    assert grpo["delta"] > 0, results
