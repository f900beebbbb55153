"""The json_keys verifier plugin: through its entry point, and from a recipe's `verify` stage."""

from __future__ import annotations

import json

from llm_core.config import validate_recipe
from llm_core.plugins import PluginHost
from llm_core.runner import PipelineRunner


def _verifier(**options):
    return PluginHost.discover().registries.verifiers.build("json_keys", options)


def test_loaded_through_the_entry_point():
    entry = PluginHost.discover().registries.verifiers.get("json_keys")
    assert entry.plugin == "example-verifier"


def test_scores():
    v = _verifier(required_keys=["name", "age"])
    assert v.verify("", 'Sure: {"name": "Ada", "age": 36}', None).passed
    partial = v.verify("", '{"name": "Ada"}', None)
    assert not partial.passed and partial.score == 0.5
    assert v.verify("", "no json here", None).score == 0.0
    wrong = v.verify("", '{"name": "Ada", "age": 37}', {"age": 36})
    assert not wrong.passed and "age" in wrong.reason


def test_used_from_a_recipe(tmp_path):
    completions = tmp_path / "completions.jsonl"
    rows = [{"prompt": "p", "completion": '{"name": "a", "age": 1}', "reference": {"age": 1}},
            {"prompt": "p", "completion": '{"name": "b"}'},
            {"prompt": "p", "completion": "nothing"}]
    completions.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    host = PluginHost.discover()
    recipe = validate_recipe({
        "name": "score", "executor": {"kind": "local", "workers": 1},
        "stages": [{"name": "score", "kind": "verify", "inputs": {"completions": str(completions)},
                    "verifier": {"name": "json_keys", "options": {"required_keys": ["name", "age"]}}}],
    }, host.registries, host)
    result = PipelineRunner(recipe, str(tmp_path / "run"), host).run()["score"]
    assert result.metrics["completions"] == 3
    assert result.metrics["pass_rate"] == 1 / 3
    assert result.metrics["rejects"] == 1
    verdicts = [json.loads(line) for line in (tmp_path / "run/score/verdicts/shard-00000.jsonl").open()]
    assert [v["passed"] for v in verdicts] == [True, False, False]
