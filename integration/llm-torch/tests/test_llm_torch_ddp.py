"""Two processes under torchrun (DDP over gloo) follow the one-process loss curve, same global batch."""

from __future__ import annotations

import json

from llm_core.artifacts import RunStore
from llm_core.config import validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner


def _run(root, docs, processes, micro):
    reset_host()
    host = get_host()
    stage = {"name": "pretrain", "kind": "pretrain", "inputs": {"documents": str(docs)}, "vocab_size": 320,
             "model": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
                       "num_kv_heads": 2},
             "seq_len": 32, "batch_size": 8, "micro_batch_size": micro, "steps": 6, "optimizer": {"lr": 3e-3},
             "log_every": 1, "threads": 1, "processes": processes}
    recipe = validate_recipe({"name": "ddp", "seed": 1, "executor": {"kind": "local", "workers": 1},
                              "stages": [stage]}, host.registries, host)
    result = PipelineRunner(recipe, str(root), host).run()["pretrain"]
    curve = [m["loss"] for m in RunStore(str(root)).read_metrics("pretrain") if "loss" in m]
    return result, curve


def test_two_processes_match_one_process(tmp_path, make_texts):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in make_texts(300)))
    one, one_curve = _run(tmp_path / "one", docs, processes=1, micro=4)
    two, two_curve = _run(tmp_path / "two", docs, processes=2, micro=None)
    assert len(one_curve) == len(two_curve) == 6
    assert max(abs(a - b) for a, b in zip(one_curve, two_curve, strict=True)) < 1e-4, (one_curve, two_curve)
    assert one_curve[-1] < one_curve[0]
    assert two.metrics["steps"] == 6 and abs(two.metrics["final_loss"] - one.metrics["final_loss"]) < 1e-3
    reset_host()
