from __future__ import annotations

import textwrap

import pytest

from llm_core.config import apply_overrides, load_recipe_file, parse_override, validate_recipe
from llm_core.errors import RecipeError

BROKEN = """
name = "broken"

[[stages]]
name = "generate"
kind = "synthetic_text"
num_dcs = 100            # typo of num_docs

[[stages]]
name = "tokenize"
kind = "tokenise_everything"   # no such stage kind

[[stages]]
name = "clean"
kind = "filter"
batch_size = "lots"      # wrong type
steps = [{ filter = "length" }]
# no inputs: the required input 'documents' is missing
"""


def _write(tmp_path, text, name="recipe.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_all_four_problems_in_one_message(tmp_path, host):
    data = load_recipe_file(_write(tmp_path, BROKEN))
    with pytest.raises(RecipeError) as info:
        validate_recipe(data, host.registries, host)
    message = str(info.value)
    assert "stages.generate.num_dcs: unknown option; did you mean 'num_docs'?" in message
    assert "stages.tokenize.kind: unknown stage kind 'tokenise_everything'" in message
    assert "stages.clean.batch_size: Input should be a valid integer" in message
    assert "stages.clean.inputs.documents: missing required input 'documents'" in message
    assert len(info.value.problems) == 4


def test_filter_steps_are_checked_generically_through_their_references(tmp_path, host):
    data = load_recipe_file(_write(tmp_path, """
        name = "steps"
        [[stages]]
        name = "gen"
        kind = "synthetic_text"
        [[stages]]
        name = "clean"
        kind = "filter"
        inputs = { documents = "gen/documents" }
        steps = [{ filter = "lenght" }, { filter = "length", options = { min_char = 3 } }]
        """))
    with pytest.raises(RecipeError) as info:
        validate_recipe(data, host.registries, host)
    problems = info.value.problems
    assert any(p.startswith("stages.clean.steps[0].filter: unknown filter 'lenght'; did you mean 'length'?")
               for p in problems)
    assert any(p.startswith("stages.clean.steps[1].filter.options.min_char: unknown option; did you mean "
                            "'min_chars'?") for p in problems)


def test_unknown_input_reference_and_cycle(tmp_path, host):
    data = load_recipe_file(_write(tmp_path, """
        name = "refs"
        [[stages]]
        name = "a"
        kind = "filter"
        inputs = { documents = "b/kept" }
        steps = [{ filter = "length" }]
        [[stages]]
        name = "b"
        kind = "filter"
        inputs = { documents = "a/kept" }
        steps = [{ filter = "length" }]
        [[stages]]
        name = "c"
        kind = "filter"
        inputs = { documents = "no/such/path.jsonl" }
        steps = [{ filter = "length" }]
        """))
    with pytest.raises(RecipeError) as info:
        validate_recipe(data, host.registries, host)
    text = str(info.value)
    assert "cycle" in text
    assert "stages.c.inputs.documents: 'no/such/path.jsonl' is neither a stage" in text


def test_overrides_address_stages_by_name(tmp_path, host):
    path = _write(tmp_path, """
        name = "ov"
        [[stages]]
        name = "generate"
        kind = "synthetic_text"
        num_docs = 10
        """)
    data = apply_overrides(load_recipe_file(path), ["stages.generate.num_docs=25", "seed=7",
                                                     "executor.workers=1"])
    recipe = validate_recipe(data, host.registries, host)
    assert recipe.stage("generate").options["num_docs"] == 25
    assert recipe.seed == 7
    assert recipe.executor.options == {"workers": 1}
    with pytest.raises(RecipeError, match="did you mean 'generate'"):
        apply_overrides(data, ["stages.generat.num_docs=1"])


def test_parse_override_values():
    assert parse_override("a.b=1e-4") == ("a.b", 1e-4)
    assert parse_override("x=true") == ("x", True)
    assert parse_override("x=[1, 2]") == ("x", [1, 2])
    assert parse_override("x=hello") == ("x", "hello")
    with pytest.raises(RecipeError):
        parse_override("no-equals-sign")


def test_yaml_recipes(tmp_path, host):
    path = _write(tmp_path, """
        name: yaml-demo
        stages:
          - name: generate
            kind: synthetic_text
            num_docs: 5
        """, name="recipe.yaml")
    recipe = validate_recipe(load_recipe_file(path), host.registries, host)
    assert recipe.stages[0].options == {"num_docs": 5}


def test_settings_fill_matching_options(tmp_path, host):
    path = _write(tmp_path, """
        name = "settings"
        [settings]
        num_shards = 3
        unrelated = "ignored where no stage has it"
        [[stages]]
        name = "generate"
        kind = "synthetic_text"
        """)
    recipe = validate_recipe(load_recipe_file(path), host.registries, host)
    from llm_core.config import stage_options

    entry = host.registries.stages.get("synthetic_text")
    assert stage_options(recipe, recipe.stages[0], entry)["num_shards"] == 3


def test_unparseable_file_names_the_file(tmp_path):
    path = _write(tmp_path, "name = [unclosed")
    with pytest.raises(RecipeError, match="recipe.toml"):
        load_recipe_file(path)
