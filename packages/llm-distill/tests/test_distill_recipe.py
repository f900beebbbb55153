"""The tiny-r1-distill recipe validates, takes one teacher everywhere, and repeats tiny-r1's data exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.config import load_recipe_file, validate_recipe
from llm_core.errors import RecipeError
from llm_core.plugins import get_host

RECIPES = Path(__file__).parents[3] / "integration" / "recipes"
TEACHER = "../../runs/tiny-r1/final_rl/checkpoint"


def _stage(data, name):
    return next(s for s in data["stages"] if s["name"] == name)


def _with_teacher(data, path: str):
    """The recipe with every reference to the teacher replaced by ``path``."""
    return json.loads(json.dumps(data).replace(TEACHER, path))


def test_recipe_validates_with_a_teacher(tmp_path):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text("{}")
    host = get_host()
    data = load_recipe_file(RECIPES / "tiny-r1-distill.toml")
    recipe = validate_recipe(_with_teacher(data, str(teacher)), host.registries, host)
    assert [s.kind for s in recipe.stages] == ["arithmetic_problems", "pretrain", "teacher_generate", "sft",
                                               "distill", "sft", "distill", "rlvr_eval", "distill_report"]
    assert json.dumps(data).count(TEACHER) == 6, "the teacher is named in six places, all the same path"


def test_recipe_without_the_teacher_says_how_to_get_it():
    host = get_host()
    data = _with_teacher(load_recipe_file(RECIPES / "tiny-r1-distill.toml"), "/nonexistent/tiny-r1/final_rl")
    with pytest.raises(RecipeError) as error:
        validate_recipe(data, host.registries, host)
    text = str(error.value)
    for stage in ("teacher_samples", "soft", "gkd", "report"):
        assert f"stages.{stage}.inputs.teacher: no teacher checkpoint at /nonexistent/tiny-r1/final_rl" in text
    assert "uv run llmt run integration/recipes/tiny-r1.toml --root runs/tiny-r1" in text


def test_same_data_as_tiny_r1_and_a_quarter_of_the_parameters():
    distill = load_recipe_file(RECIPES / "tiny-r1-distill.toml")
    r1 = load_recipe_file(RECIPES / "tiny-r1.toml")
    assert distill["seed"] == r1["seed"]
    assert {k: v for k, v in _stage(distill, "data").items() if k != "description"} == _stage(r1, "data")

    def parameters(model, vocab=512):
        h, inter, layers = model["hidden_size"], model["intermediate_size"], model["num_layers"]
        kv = h // model["num_heads"] * model["num_kv_heads"]
        return layers * (2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h) + vocab * h + h

    ratio = parameters(_stage(distill, "student_base")["model"]) / parameters(_stage(r1, "pretrain")["model"])
    assert 0.2 < ratio < 0.3, ratio
    epochs = {n: _stage(distill, n)["epochs"] for n in ("hard", "soft", "gkd_warmup", "gkd")}
    assert epochs["hard"] == epochs["soft"] == epochs["gkd_warmup"] + epochs["gkd"], \
        "hard, soft and gkd (with its warm start) train on the same number of sequences"
    assert len({_stage(distill, n)["batch_size"] for n in epochs}) == 1
