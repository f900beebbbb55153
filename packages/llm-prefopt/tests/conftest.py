"""A tiny chat checkpoint and preference data with known answers, built once per session.

The checkpoint is made with llm-torch directly (a test may use another member; the package may
not): a byte-level BPE on arithmetic text and a ~50k-parameter Llama, saved as an HF folder with
the ChatML template pinned. Pairs: the right answer over a wrong one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1}


def arithmetic(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        wrong = a + b + rng.choice([-3, -2, -1, 1, 2, 3])
        out.append({"id": f"q{i}", "prompt": f"What is {a} + {b}?", "reference": str(a + b),
                    "chosen": f"The answer is {a + b}.", "rejected": f"The answer is {wrong}."})
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("llm_torch")
    import torch

    from llm_torch import hf
    from llm_torch.model import LlamaModel, ModelConfig
    from llm_torch.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("tiny") / "checkpoint"
    texts = [f"{r['prompt']} {r['chosen']} {r['rejected']}" for r in arithmetic(400, seed=1)] * 3
    tokenizer = train_bpe(texts, 300).with_chat_template("chatml")
    torch.manual_seed(0)
    model = LlamaModel(ModelConfig(vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                                   max_seq_len=128, **TINY))
    hf.save_checkpoint(str(folder), model, tokenizer, {"stage": "test"})
    return str(folder)


@pytest.fixture(scope="session")
def pair_files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pairs")
    records = arithmetic(48)
    return {"train": write_jsonl(folder / "train.jsonl", records[:40]),
            "heldout": write_jsonl(folder / "heldout.jsonl", records[40:]),
            "problems": write_jsonl(folder / "problems.jsonl",
                                    [{"id": r["id"], "prompt": r["prompt"], "reference": r["reference"]}
                                     for r in records])}


def run_stages(stages: list[dict[str, Any]], root: str, seed: int = 0) -> dict[str, Any]:
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    host = get_host()
    recipe = validate_recipe({"name": "t", "seed": seed, "stages": stages}, host.registries, host)
    return PipelineRunner(recipe, root, host).run()


@pytest.fixture(scope="session")
def stages_runner():
    """``run(stages, root)``: a recipe of these stages, run through the registries."""
    return run_stages


@pytest.fixture(scope="session")
def jsonl_writer():
    return write_jsonl
