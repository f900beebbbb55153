"""tiny-r1 with vLLM rollouts in its GRPO stage, selected by ``--set`` as a user would (slow: the recipe's
data, pretrain, cold start and GRPO stages, then held-out pass@1 of the cold start and GRPO models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RECIPE = Path(__file__).parents[2] / "recipes" / "tiny-r1.toml"
VLLM_ROLLOUTS = 'stages.grpo.rollout={name = "vllm", options = {threads = 1}}'

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def run(vllm_env, tmp_path_factory):
    from llm_core.config import apply_overrides, load_recipe_file, validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    data = apply_overrides(load_recipe_file(RECIPE), [VLLM_ROLLOUTS])
    keep = ("data", "pretrain", "cold_start", "grpo", "eval")
    data["stages"] = [s for s in data["stages"] if s["name"] in keep]
    evaluation = data["stages"][-1]
    evaluation["inputs"] = {k: v for k, v in evaluation["inputs"].items() if k in ("problems", "cold_start", "grpo")}
    evaluation["compare"] = [["cold_start", "grpo"]]
    root = tmp_path_factory.mktemp("tiny-r1-vllm")
    host = get_host()
    PipelineRunner(validate_recipe(data, host.registries, host), str(root), host).run()
    return root


def test_grpo_with_vllm_rollouts_beats_the_cold_start(run):
    results = json.loads((run / "eval/results.json").read_text())
    for metric in ("greedy", "sampled"):
        grpo = next(c for c in results["comparisons"] if c["candidate"] == "grpo" and c["metric"] == metric)
        assert grpo["beyond_intervals"] and grpo["delta"] > 0, results


def test_the_log_prob_gap_is_recorded_every_step(run):
    steps = [json.loads(line) for line in (run / "grpo/metrics.jsonl").read_text().splitlines()]
    steps = [m for m in steps if "reward_mean" in m]
    assert len(steps) == 30
    assert all(m["logprob_gap"] < 1e-4 for m in steps), [m["logprob_gap"] for m in steps]
