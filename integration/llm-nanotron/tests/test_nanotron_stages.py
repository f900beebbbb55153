"""The stages on nanotron at TP=2, at toy size: pretrain, SFT and GRPO (with the torch rollout engine),
each switched by its ``engine`` option alone, through the recipe runner as a recipe runs them."""

from __future__ import annotations

import json

MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}
NANOTRON = {"name": "nanotron", "options": {"tp": 2}}


def stages():
    return [
        {"name": "data", "kind": "arithmetic_problems", "train_problems": 300, "heldout_problems": 40,
         "cold_start_traces": 64, "pretrain_solved": 200, "pretrain_drills": 100},
        {"name": "pretrain", "kind": "pretrain", "inputs": {"documents": "data/documents"}, "vocab_size": 300,
         "seq_len": 96, "model": MODEL, "batch_size": 8, "steps": 12, "optimizer": {"lr": 3e-3}, "threads": 1,
         "log_every": 4, "checkpoint_every": 6, "engine": NANOTRON},
        {"name": "cold_start", "kind": "sft", "inputs": {"checkpoint": "pretrain/checkpoint",
                                                          "conversations": "data/traces"},
         "chat_template": "chatml", "seq_len": 256, "batch_size": 8, "steps": 4, "optimizer": {"lr": 1e-3},
         "threads": 1, "log_every": 2, "engine": NANOTRON},
        {"name": "grpo", "kind": "grpo", "inputs": {"checkpoint": "cold_start/checkpoint",
                                                     "problems": "data/train"},
         "verifier": {"name": "math", "workers": 0}, "group_size": 4, "prompts_per_step": 2, "steps": 2,
         "loss": {"name": "grpo", "options": {"kl_coef": 0.05}}, "sampling": {"max_new_tokens": 12},
         "skip_uniform_groups": False, "threads": 1, "engine": NANOTRON, "rollout": {"name": "torch"}},
    ]


def test_pretrain_sft_and_grpo_run_on_nanotron(tmp_path):
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    recipe = validate_recipe({"name": "toy", "seed": 0, "stages": stages()}, host.registries, host)
    PipelineRunner(recipe, str(tmp_path), host).run()
    for stage in ("pretrain", "cold_start", "grpo"):
        summary = json.loads((tmp_path / stage / "checkpoint" / "llmt.json").read_text())
        assert summary["engine"] == "nanotron", stage
    pretrain = [json.loads(line) for line in (tmp_path / "pretrain/metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in pretrain if "loss" in m]
    assert losses[-1] < losses[0] and any("parameters" in m for m in pretrain)
    grpo = [json.loads(line) for line in (tmp_path / "grpo/metrics.jsonl").read_text().splitlines()]
    assert any("reward_mean" in m for m in grpo) and any("kl" in m for m in grpo), grpo  # it trained
