"""The tiny-pretrain-sft recipe: it validates (default tests) and, run whole, its losses fall (slow)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llm_core.artifacts import RunStore
from llm_core.config import load_recipe_file, validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner

RECIPE = Path(__file__).parents[2] / "recipes" / "tiny-pretrain-sft.toml"


@pytest.fixture
def host():
    reset_host()
    yield get_host()
    reset_host()


def test_recipe_validates(host):
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    assert [s.kind for s in recipe.stages] == ["synthetic_text", "pretrain", "synthetic_chat", "sft"]


@pytest.mark.slow
def test_recipe_runs_and_both_losses_fall(host, tmp_path):
    recipe = validate_recipe(load_recipe_file(RECIPE), host.registries, host)
    start = time.perf_counter()
    results = PipelineRunner(recipe, str(tmp_path), host).run()
    elapsed = time.perf_counter() - start
    store = RunStore(str(tmp_path))
    for stage in ("pretrain", "sft"):
        metrics = results[stage].metrics
        assert metrics["final_loss"] < metrics["first_loss"] - 1.0, (stage, metrics)
        curve = [m["loss"] for m in store.read_metrics(stage) if "loss" in m]
        assert min(curve[-5:]) < min(curve[:3])
    print(f"tiny-pretrain-sft took {elapsed:.0f} s")
