"""A toy run through the registries (arithmetic problems, pretrain, cold-start SFT behind the gate),
built once per session; the evaluation stages under test run on top of it."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1}
HELDOUT_GATE = {"name": "contamination", "options": {"eval_sets": [{"input": "heldout"}]}}


def run_recipe(data: dict[str, Any], root: str) -> dict[str, Any]:
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    recipe = validate_recipe(data, host.registries, host)
    return PipelineRunner(recipe, root, host).run()


def base_stages() -> list[dict[str, Any]]:
    return [
        {"name": "data", "kind": "arithmetic_problems", "train_problems": 300, "heldout_problems": 40,
         "cold_start_traces": 64, "terse_fraction": 0.5, "pretrain_solved": 200, "pretrain_drills": 100},
        {"name": "pretrain", "kind": "pretrain", "inputs": {"documents": "data/documents"}, "vocab_size": 300,
         "seq_len": 96, "model": TINY_MODEL, "batch_size": 8, "steps": 15, "optimizer": {"lr": 3e-3},
         "threads": 1, "log_every": 5, "checkpoint_every": 100},
        {"name": "cold_start", "kind": "sft", "inputs": {"checkpoint": "pretrain/checkpoint",
                                                          "conversations": "data/traces", "heldout": "data/heldout"},
         "chat_template": "chatml", "seq_len": 256, "batch_size": 8, "steps": 4, "optimizer": {"lr": 1e-3},
         "threads": 1, "log_every": 2, "checkpoint_every": 100, "decontaminate": HELDOUT_GATE},
    ]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("llm_torch")
    pytest.importorskip("llm_rlvr")
    root = str(tmp_path_factory.mktemp("tiny-eval"))
    run_recipe({"name": "tiny-base", "seed": 0, "stages": base_stages()}, root)
    return root


@pytest.fixture
def run_on_tiny(tiny_run, tmp_path):
    """``run(stages)``: the toy base stages (complete, copied) plus ``stages``, in a fresh folder."""

    def run(stages: list[dict[str, Any]]) -> str:
        root = str(tmp_path / "run")
        shutil.copytree(tiny_run, root)
        run_recipe({"name": "tiny-base", "seed": 0, "stages": [*base_stages(), *stages]}, root)
        return root

    return run
