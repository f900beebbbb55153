"""GRPO with vLLM rollouts at toy size, through the registries as a recipe selects them: the policy's
weights reach vLLM before every step (the trainer's and vLLM's log-probs of the sampled tokens then
agree), the gap is logged every step, and rejection sampling samples with vLLM too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

# Shorter is better: a reward that varies even for an untrained model, so that groups are not uniform.
SHORT_REWARD = {"name": "length_penalty", "workers": 0,
                "options": {"verifier": "format", "options": {"pattern": ".*"}, "max_chars": 40, "buffer_chars": 30}}


def run_recipe(stages: list[dict], root: Path) -> None:
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    data = {"name": "vllm-grpo", "seed": 0, "stages": stages}
    PipelineRunner(validate_recipe(data, host.registries, host), str(root), host).run()


def test_grpo_and_rejection_sampling_with_vllm_rollouts(exported, vllm_server, tmp_path):
    _, policy = exported(tmp_path / "policy", seed=50)
    rollout = {"name": "vllm", "options": {"url": vllm_server.client.url}}
    data = {"name": "data", "kind": "arithmetic_problems", "train_problems": 40, "heldout_problems": 4,
            "cold_start_traces": 0, "pretrain_solved": 0, "pretrain_drills": 0}
    grpo = {"name": "grpo", "kind": "grpo", "inputs": {"checkpoint": policy, "problems": "data/train"},
            "rollout": rollout, "verifier": SHORT_REWARD, "group_size": 4, "prompts_per_step": 2, "steps": 3,
            "optimizer": {"lr": 1e-2}, "sampling": {"max_new_tokens": 12}, "skip_uniform_groups": False,
            "threads": 1}
    rs = {"name": "rs", "kind": "rejection_sampling", "inputs": {"checkpoint": "grpo/checkpoint",
                                                                   "problems": "data/train"},
          "rollout": rollout, "verifier": SHORT_REWARD, "samples_per_prompt": 2,
          "max_prompts": 4, "sampling": {"max_new_tokens": 12}}
    run_recipe([data, grpo, rs], tmp_path / "run")

    steps = [json.loads(line) for line in (tmp_path / "run/grpo/metrics.jsonl").read_text().splitlines()]
    steps = [m for m in steps if "reward_mean" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]
    print(f"\nGRPO with vLLM rollouts, log-prob gap per step (mean, max): "
          f"{[(m['logprob_gap'], m['logprob_gap_max']) for m in steps]}")
    # lr 1e-2 moves the weights every step: a stale rollout policy would show here at once.
    assert all(m["logprob_gap_max"] < 1e-4 for m in steps), [m["logprob_gap_max"] for m in steps]
    report = json.loads((tmp_path / "run/rs/report.json").read_text())
    assert report["samples"] == 8 and report["kept"] >= 1, report
