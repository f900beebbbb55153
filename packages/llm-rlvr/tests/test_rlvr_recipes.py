"""Every llm-rlvr recipe validates against the installed plugins (stage kinds, options, inputs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_core.config import load_recipe_file, validate_recipe
from llm_core.plugins import get_host

RECIPES = Path(__file__).parents[3] / "integration" / "recipes"


@pytest.mark.parametrize("name, kinds", [
    ("tiny-r1.toml", ["arithmetic_problems", "pretrain", "sft", "grpo", "rejection_sampling", "sft", "grpo",
                      "rlvr_eval", "test_time_compute", "eval_report"]),
    ("r1-zero.toml", None),
    ("smollm2-grpo.toml", ["arithmetic_problems", "import_checkpoint", "grpo", "rlvr_eval"]),
])
def test_recipe_validates(name, kinds):
    host = get_host()
    recipe = validate_recipe(load_recipe_file(RECIPES / name), host.registries, host)
    if kinds is not None:
        assert [stage.kind for stage in recipe.stages] == kinds
