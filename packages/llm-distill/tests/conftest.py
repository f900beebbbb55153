"""A toy teacher and a smaller student with the teacher's tokenizer, built once per session.

The stages under test reach engines only through the registries, exactly as in a recipe: the
fixture runs the real ``arithmetic_problems``, ``pretrain`` and ``sft`` stages at toy size
(the first from llm-rlvr, the others from llm-torch: test-only dependencies).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

TEACHER = {"hidden_size": 48, "intermediate_size": 96, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1}
STUDENT = {"hidden_size": 24, "intermediate_size": 48, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1}


def run_recipe(data: dict[str, Any], root: str) -> dict[str, Any]:
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    recipe = validate_recipe(data, host.registries, host)
    return PipelineRunner(recipe, root, host).run()


def base_stages() -> list[dict[str, Any]]:
    train = {"batch_size": 8, "threads": 1, "log_every": 5, "checkpoint_every": 100}
    return [
        {"name": "data", "kind": "arithmetic_problems", "train_problems": 200, "heldout_problems": 16,
         "cold_start_traces": 48, "pretrain_solved": 150, "pretrain_drills": 50},
        {"name": "pretrain", "kind": "pretrain", "inputs": {"documents": "data/documents"}, "vocab_size": 300,
         "seq_len": 96, "model": TEACHER, "steps": 12, "optimizer": {"lr": 3e-3}, **train},
        {"name": "teacher", "kind": "sft", "inputs": {"checkpoint": "pretrain/checkpoint",
                                                       "conversations": "data/traces"},
         "chat_template": "chatml", "seq_len": 192, "steps": 4, "optimizer": {"lr": 1e-3}, **train},
        {"name": "student", "kind": "pretrain", "inputs": {"documents": "data/documents",
                                                            "tokenizer": "teacher/checkpoint"},
         "seq_len": 96, "model": STUDENT, "steps": 6, "optimizer": {"lr": 3e-3}, **train},
    ]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("llm_torch")
    pytest.importorskip("llm_rlvr")
    root = str(tmp_path_factory.mktemp("tiny-distill"))
    run_recipe({"name": "tiny-base", "seed": 0, "stages": base_stages()}, root)
    return root


@pytest.fixture
def run_stages(tiny_run, tmp_path):
    """``run(stages)``: the toy base (already complete, copied into this test's folder) plus ``stages``."""
    shutil.copytree(tiny_run, tmp_path, dirs_exist_ok=True)

    def run(stages: list[dict[str, Any]]) -> dict[str, Any]:
        return run_recipe({"name": "t", "seed": 0, "stages": [*base_stages(), *stages]}, str(tmp_path))

    run.root = Path(tmp_path)
    return run
