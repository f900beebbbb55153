"""The distillation stages on a toy teacher and student: teacher_generate, distill (soft with a cached
top-k, on-policy GKD and MiniLLM), distill_report, and the errors bad input gets before any compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.errors import RecipeError

TRAIN = {"batch_size": 4, "threads": 1, "log_every": 1, "optimizer": {"lr": 1e-3}}


def generate(name="gen", **extra):
    return {"name": name, "kind": "teacher_generate", "inputs": {"teacher": "teacher/checkpoint",
                                                                  "problems": "data/train"},
            "samples_per_prompt": 2, "keep_per_prompt": 2, "max_prompts": 12, "threads": 1,
            "sampling": {"max_new_tokens": 24, "temperature": 1.0}, **extra}


def distill(name, **extra):
    inputs = {"student": "student/checkpoint", "teacher": "teacher/checkpoint", "conversations": "gen/conversations"}
    return {"name": name, "kind": "distill", "inputs": inputs,
            "seq_len": 192, **TRAIN, **extra}


def _metrics(root: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (root / stage / "metrics.jsonl").read_text().splitlines()]


def test_teacher_generate_soft_kd_with_cached_top_k(run_stages):
    run_stages([generate(), distill("soft", teacher={"top_k": 8, "cache": True}, epochs=None, steps=3)])
    root = run_stages.root
    report = json.loads((root / "gen" / "report.json").read_text())
    chats = [json.loads(x) for x in (root / "gen/conversations/conversations.jsonl").read_text().splitlines()]
    assert report["prompts"] == 12 and report["samples"] == 24 and report["kept"] == len(chats) > 0
    assert report["passed"] == 24, "without a verifier every sample passes"
    assert chats[0]["messages"][0]["role"] == "user" and chats[0]["messages"][1]["role"] == "assistant"
    metrics = _metrics(root, "soft")
    cache = next(m for m in metrics if "teacher_cache_bytes" in m)
    assert cache["teacher_cache_bytes"] == (root / "soft" / "teacher_topk.npz").stat().st_size
    assert cache["teacher_cache_k"] == 8 and cache["full_vocabulary_bytes"] > 5 * cache["teacher_cache_bytes"]
    steps = [m for m in metrics if "step" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]
    assert all(m["on_policy"] == 0 and 0 < m["teacher_topk_mass"] < 1 for m in steps)
    assert steps[-1]["student_tokens"] == sum(m["tokens"] for m in steps)
    assert (root / "soft" / "checkpoint" / "config.json").exists()


def test_cached_top_k_equals_online_scoring(tiny_run):
    """The cache replays exactly what the teacher gives online, at every target position."""
    import torch

    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec
    from llm_distill.examples import padded, parse_example, target_positions
    from llm_distill.teacher import TopKCache, with_teacher

    teacher = build_train_engine(EngineSpec(), get_registries(), checkpoint=f"{tiny_run}/teacher/checkpoint")
    lines = Path(tiny_run, "data/traces/conversations.jsonl").read_text().splitlines()[:5]
    examples = [parse_example(json.loads(x), teacher.tokenizer, 192) for x in lines]
    cache = TopKCache.build(teacher, examples, 6, teacher.tokenizer.pad_id, batch_size=2)
    batch = padded([e.ids for e in examples], [e.mask for e in examples], teacher.tokenizer.pad_id)
    online, cached = with_teacher(batch, teacher, 6), cache.attach(batch, range(5), examples)
    for row, example in enumerate(examples):
        positions = target_positions(example.mask)
        assert torch.equal(online["teacher_top_ids"][row, positions], cached["teacher_top_ids"][row, positions])
        assert torch.allclose(online["teacher_top_logprobs"][row, positions],
                              cached["teacher_top_logprobs"][row, positions], atol=1e-5)  # other padding


def test_on_policy_gkd_and_minillm(run_stages):
    run_stages([generate(),
                distill("gkd", mode="on_policy", loss={"name": "jsd", "options": {"beta": 0.5}}, epochs=None,
                        steps=4, on_policy={"student_fraction": 0.5, "sampling": {"max_new_tokens": 16}}),
                distill("minillm", mode="on_policy", loss="minillm", epochs=None, steps=2, teacher={"top_k": 16},
                        on_policy={"student_fraction": 1.0, "sampling": {"max_new_tokens": 16}})])
    root = run_stages.root
    gkd = [m for m in _metrics(root, "gkd") if "step" in m]
    assert {m["on_policy"] for m in gkd} == {0.0, 1.0}, "lambda 0.5 mixes both kinds of steps"
    assert all(("kl_student_samples" in m) == (m["on_policy"] == 1.0) for m in gkd)
    assert all(("kl_teacher_samples" in m) == (m["on_policy"] == 0.0) for m in gkd)
    manifest = json.loads((root / "gkd" / "manifest.json").read_text())
    assert {"kl_student_samples", "kl_teacher_samples", "exposure_gap"} <= set(manifest["metrics"])
    minillm = [m for m in _metrics(root, "minillm") if "step" in m]
    assert all(m["on_policy"] == 1.0 and m["reverse_kl_samples"] == m["reverse_kl_samples"] for m in minillm)


def test_report_table_share_and_plot(run_stages):
    evaluation = {"name": "eval", "kind": "rlvr_eval", "inputs": {"problems": "data/heldout",
                                                                   "teacher": "teacher/checkpoint",
                                                                   "soft": "soft/checkpoint"},
                  "verifier": {"name": "format", "workers": 0, "options": {"pattern": "(?s).*"}},
                  "sampling": {"max_new_tokens": 12}, "threads": 1}
    report = {"name": "report", "kind": "distill_report",
              "inputs": {"teacher": "teacher/checkpoint", "problems": "data/heldout", "pass_at_1": "eval/results.json",
                         "soft": "soft/checkpoint"},
              "probe": {"prompts": 4, "sampling": {"max_new_tokens": 12}}, "threads": 1}
    run_stages([generate(), distill("soft", epochs=None, steps=2), evaluation, report])
    root = run_stages.root
    rows = json.loads((root / "report" / "report.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["teacher", "soft"]
    teacher, soft = rows
    assert teacher["share"] == pytest.approx(1.0) and soft["parameters"] < teacher["parameters"]
    assert soft["trained_tokens"] > 0 and soft["kl_student_samples"] >= 0 and "exposure_gap" in soft
    assert (root / "report" / "report.png").stat().st_size > 1000
    assert "| soft |" in (root / "report" / "report.md").read_text()


def test_share_interval_and_parameters():
    from llm_distill.report_stage import share_interval

    share, low, high = share_interval({"passed": 40, "n": 100}, {"passed": 80, "n": 100})
    assert share == pytest.approx(0.5) and low < 0.5 < high and high < 0.7


# --- bad input: an error naming what is wrong and how to fix it, before any compute -----------


def test_mismatched_vocabularies_name_both_tokenizers(run_stages):
    other = {"name": "other", "kind": "pretrain", "inputs": {"documents": "data/documents"}, "vocab_size": 320,
             "seq_len": 64, "model": {"hidden_size": 16, "intermediate_size": 32, "num_layers": 1, "num_heads": 2,
                                      "num_kv_heads": 1}, "steps": 1, "batch_size": 2, "threads": 1}
    bad = distill("soft", epochs=None, steps=1)
    bad["inputs"]["student"] = "other/checkpoint"
    with pytest.raises(ValueError, match=r"student tokenizer \(.*other/checkpoint\) and teacher tokenizer "
                                         r"\(.*teacher/checkpoint\) differ: vocab_size \d+ vs \d+"):
        run_stages([other, generate(), bad])
    assert not (run_stages.root / "soft" / "metrics.jsonl").exists(), "nothing trained"


def test_missing_teacher_checkpoint_fails_validation(tiny_run, tmp_path):
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host

    host = get_host()
    stage = generate()
    stage["inputs"]["teacher"] = str(tmp_path / "no-such-teacher")
    with pytest.raises(RecipeError) as error:
        validate_recipe({"name": "t", "stages": [stage]}, host.registries, host)
    assert "stages.gen.inputs.teacher: no teacher checkpoint at" in str(error.value)
    assert "--set stages.gen.inputs.teacher=PATH" in str(error.value)


def test_empty_sft_set_is_an_error(run_stages, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty") / "conversations.jsonl"
    empty.write_text("")
    bad = distill("soft", epochs=None, steps=1)
    bad["inputs"]["conversations"] = str(empty)
    with pytest.raises(ValueError, match=r"the SFT set .*conversations.jsonl is empty"):
        run_stages([bad])
    with pytest.raises(ValueError, match=r"the SFT set is empty: no answer to 4 prompts passed 'format'"):
        run_stages([generate("strict", max_prompts=4, verifier={"name": "format", "options": {"pattern": "^$"}})])


def test_on_policy_loop_resumes_exactly(tiny_run, tmp_path):
    """Killed after 2 of 4 steps and resumed on fresh engines, GKD ends where an uninterrupted run
    ends: the step's batch (coin, samples, teacher scores) is a pure function of the step."""
    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec
    from llm_core.training import Trainer
    from llm_distill.distill_stage import DistillConfig, DistillStage, Parts
    from llm_distill.examples import parse_example

    registries = get_registries()
    config = DistillConfig(mode="on_policy", loss="jsd", batch_size=3, epochs=None, steps=4,
                           on_policy={"student_fraction": 0.5, "sampling": {"max_new_tokens": 8}})

    def trainer(steps, **state):
        teacher = build_train_engine(EngineSpec(), registries, checkpoint=f"{tiny_run}/teacher/checkpoint")
        student = build_train_engine(EngineSpec(), registries, checkpoint=f"{tiny_run}/student/checkpoint",
                                     chat_template=teacher.tokenizer.chat_template, optimizer=config.optimizer,
                                     total_steps=4)
        lines = Path(tiny_run, "data/traces/conversations.jsonl").read_text().splitlines()[:6]
        parts = Parts(student, teacher, student, [parse_example(json.loads(x), teacher.tokenizer, 192)
                                                  for x in lines], None)
        ctx = type("Ctx", (), {"seed": 3})()
        return Trainer(student, lambda step: DistillStage(config).plan_step(ctx, parts, step),
                       config.loss.build(registries), steps, log_every=1, **state)

    whole = trainer(4)
    whole.run()
    assert {r["on_policy"] for r in whole.history} == {0.0, 1.0}
    state = str(tmp_path / "resume")
    trainer(2, checkpoint_every=2, state_uri=state, keep_state=True).run()
    resumed = trainer(4, checkpoint_every=2, state_uri=state)
    assert resumed.start_step() == 2
    resumed.run()
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history[2:]]
