"""The evaluation stages and the callback on a toy run (tiny model, registries only, as in a recipe)."""

from __future__ import annotations

import json
from pathlib import Path

HELDOUT_GATE = {"name": "contamination", "options": {"eval_sets": [{"input": "heldout"}]}}


def manifest(root: str, stage: str) -> dict:
    return json.loads(Path(root, stage, "manifest.json").read_text())


def test_gate_reaches_sft_and_rejection_sampling(run_on_tiny):
    root = run_on_tiny([{"name": "rs", "kind": "rejection_sampling", "threads": 1,
                         "inputs": {"checkpoint": "cold_start/checkpoint", "problems": "data/train",
                                    "heldout": "data/heldout"},
                         "decontaminate": HELDOUT_GATE, "samples_per_prompt": 1, "max_prompts": 4,
                         "verifier": {"name": "format", "options": {"pattern": ".*"}, "workers": 0},
                         "sampling": {"max_new_tokens": 8}}])
    sft = json.loads(Path(root, "cold_start", "decontamination.json").read_text())
    assert sft["checked"] == 64 and sft["what"] == "conversations"
    rs = json.loads(Path(root, "rs", "decontamination.json").read_text())
    assert rs["checked"] == 300 and rs["what"] == "problems"
    assert len(Path(root, "rs", "contaminated.jsonl").read_text().splitlines()) == rs["dropped"]
    logged = [json.loads(line) for line in Path(root, "rs", "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("decontaminate_checked") == 300 for r in logged)


def test_gate_reaches_preference_stages(run_on_tiny, tiny_run, tmp_path):
    """dpo (as kto, reward_model and ppo: llm-prefopt's LoopOptions) drops pairs holding a held-out problem."""
    lines = Path(tiny_run, "data", "heldout", "problems.jsonl").read_text().splitlines()
    heldout = [json.loads(line) for line in lines]
    pairs = [{"prompt": p["prompt"], "chosen": f"<answer>{p['reference']}</answer>", "rejected": "<answer>0</answer>"}
             for p in heldout[:2]]
    pairs += [{"prompt": f"What is {a} + {a}?", "chosen": f"<answer>{2 * a}</answer>", "rejected": "<answer>1</answer>"}
              for a in range(2, 8)]
    pairs[1]["prompt"] = pairs[1]["prompt"].upper()  # lightly edited: still a held-out problem
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    root = run_on_tiny([{"name": "dpo", "kind": "dpo", "threads": 1, "steps": 1, "batch_size": 4, "max_length": 256,
                         "inputs": {"checkpoint": "cold_start/checkpoint", "pairs": str(path),
                                    "heldout_problems": "data/heldout"},
                         "decontaminate": {**HELDOUT_GATE, "options": {"eval_sets": [{"input": "heldout_problems"}]}}}])
    gate = json.loads(Path(root, "dpo", "decontamination.json").read_text())
    assert (gate["what"], gate["checked"], gate["dropped"]) == ("preference pairs", 8, 2)
    logged = [json.loads(line) for line in Path(root, "dpo", "metrics.jsonl").read_text().splitlines()]
    merged = {k: v for r in logged for k, v in r.items()}
    assert {"decontaminate_checked": 8, "contaminated": 2, "pairs": 6}.items() <= merged.items()


def test_test_time_compute_and_report(run_on_tiny):
    root = run_on_tiny([
        {"name": "ttc", "kind": "test_time_compute", "threads": 1, "max_problems": 6, "samples": 8,
         "ns": [1, 2, 4, 8], "selector": {"name": "process_reward", "options": {"scorer": "arithmetic_steps"}},
         "sampling": {"max_new_tokens": 24},
         "inputs": {"problems": "data/heldout", "cold_start": "cold_start/checkpoint"}},
        {"name": "report", "kind": "eval_report", "title": "toy run",
         "inputs": {"cold_start": "cold_start", "ttc": "ttc", "pretrain": "pretrain"}}])
    curves = json.loads(Path(root, "ttc", "ttc.json").read_text())["curves"]["cold_start"]
    assert [p["n"] for p in curves] == [1, 2, 4, 8]
    passes = [p["pass"] for p in curves]
    assert passes == sorted(passes)  # pass@N never falls with N
    assert Path(root, "ttc", "ttc.png").read_bytes().startswith(b"\x89PNG")
    page = Path(root, "report", "report.html").read_text()
    assert "Test-time compute" in page and "Contamination" in page and "data:image/png;base64," in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # self-contained


def test_long_context_probes_at_2k_tokens(run_on_tiny):
    root = run_on_tiny([{"name": "probes", "kind": "long_context_probes", "threads": 1, "lengths": [2048],
                         "samples": 1, "inputs": {"cold_start": "cold_start/checkpoint"}}])
    wall = manifest(root, "probes")["wall_time_s"]
    items = [json.loads(line) for line in Path(root, "probes", "cold_start", "items.jsonl").read_text().splitlines()]
    assert len(items) == 4 * 5 + 4  # needle tasks x depths, plus the other four
    assert Path(root, "probes", "cold_start", "needle_heatmap.png").read_bytes().startswith(b"\x89PNG")
    assert "niah_single (single needle)" in Path(root, "probes", "table.md").read_text()
    assert wall < 120, f"probes took {wall:.0f} s"  # about 15 s on 2 idle cores (README)


def test_evaluate_stage_and_periodic_eval_callback(run_on_tiny, tiny_run):
    math_task = {"name": "math", "options": {"problems": str(Path(tiny_run, "data", "heldout")), "limit": 6}}
    root = run_on_tiny([
        {"name": "evaluate", "kind": "evaluate", "threads": 1, "samples": 2, "ks": [1, 2],
         "sampling": {"max_new_tokens": 16, "temperature": 1.0},
         "tasks": [math_task, {"name": "multiple_choice", "options": {"builtin": "mmlu", "limit": 4}}],
         "inputs": {"cold_start": "cold_start/checkpoint"}},
        {"name": "more_sft", "kind": "sft", "inputs": {"checkpoint": "cold_start/checkpoint",
                                                        "conversations": "data/traces"},
         "seq_len": 256, "batch_size": 4, "steps": 2, "threads": 1, "log_every": 1,
         "callbacks": [{"name": "periodic_eval", "options": {"tasks": [math_task], "every": 2, "max_examples": 2,
                                                             "sampling": {"max_new_tokens": 8}}}]}])
    rows = {r["name"]: r for r in json.loads(Path(root, "evaluate", "results.json").read_text())["rows"]}
    assert rows["cold_start/math"]["n"] == 6 and set(rows["cold_start/math"]["pass_at_k"]) == {"1", "2"}
    assert rows["cold_start/multiple_choice"]["n"] == 4
    logged = [json.loads(line) for line in Path(root, "more_sft", "metrics.jsonl").read_text().splitlines()]
    assert any("eval/math/pass_at_1" in r for r in logged)


def test_gate_reaches_distill(run_on_tiny, tiny_run, tmp_path):
    """distill drops the chats that hold a held-out problem before it scores anything."""
    lines = Path(tiny_run, "data", "heldout", "problems.jsonl").read_text().splitlines()
    heldout = [json.loads(line) for line in lines][:2]
    chats = [{"messages": [{"role": "user", "content": p["prompt"]},
                           {"role": "assistant", "content": f"<answer>{p['reference']}</answer>"}]} for p in heldout]
    chats += [{"messages": [{"role": "user", "content": f"What is {a} + {a}?"},
                            {"role": "assistant", "content": f"<answer>{2 * a}</answer>"}]} for a in range(2, 6)]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chats))
    root = run_on_tiny([{"name": "kd", "kind": "distill", "threads": 1, "epochs": None, "steps": 1,
                         "batch_size": 2, "teacher": {"top_k": 8},
                         "inputs": {"student": "cold_start/checkpoint", "teacher": "cold_start/checkpoint",
                                    "conversations": str(path), "heldout": "data/heldout"},
                         "decontaminate": HELDOUT_GATE}])
    gate = json.loads(Path(root, "kd", "decontamination.json").read_text())
    assert (gate["what"], gate["checked"], gate["dropped"]) == ("conversations", 6, 2)


def test_test_time_compute_in_parallel_gives_the_curves_of_one_process(run_on_tiny):
    """parallel = true: each checkpoint's curve drawn in its own worker process (the local executor,
    two workers) equals the curve of one process."""
    ttc = {"kind": "test_time_compute", "threads": 1, "max_problems": 4, "samples": 4, "ns": [1, 2, 4],
           "sampling": {"max_new_tokens": 16}, "prompt": {"prompt_format": "Question: {prompt}\nAnswer:"},
           "inputs": {"problems": "data/heldout", "cold_start": "cold_start/checkpoint",
                      "pretrain": "pretrain/checkpoint"}}
    root = run_on_tiny([{"name": "serial", **ttc},
                        {"name": "parallel", **ttc, "parallel": True, "executor": {"kind": "local", "workers": 2}}])
    serial, parallel = (json.loads(Path(root, stage, "ttc.json").read_text()) for stage in ("serial", "parallel"))
    assert list(parallel["curves"]) == ["cold_start", "pretrain"]
    assert parallel == serial
