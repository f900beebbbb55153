"""RLAIF labelling and Constitutional AI on the toy model: statistics, checks, files, bad input."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("llm_torch")

CONSTITUTION = '''
[[principles]]
name = "short"
critique = "Is it too long?"
revision = "Make it shorter."
check = { kind = "max_words", max_words = 3 }

[[principles]]
name = "polite"
critique = "Is it rude?"
revision = "Make it polite."

[principles.check]
kind = "filter"
filter = "toxicity"
options = { words = ["answer"], min_toxic_words = 1, max_toxic_word_ratio = 0.0 }
'''


def test_ai_label_judges_both_orders_and_measures_accuracy(tiny_checkpoint, pair_files, tmp_path, stages_runner):
    pytest.importorskip("llm_rlvr")  # the math verifier gives the ground truth
    stage = {"name": "label", "kind": "ai_label", "inputs": {"pairs": pair_files["train"], "judge": tiny_checkpoint},
             "verifier": "math", "tie_margin": 0.0, "threads": 1}
    stages_runner([stage], str(tmp_path))
    report = json.loads((tmp_path / "label/report.json").read_text())
    assert report["pairs_judged"] == 40 and report["pairs_with_truth"] == 40
    assert 0 <= report["orders_agree"] <= 1 and 0 <= report["first_slot_win_rate"] <= 1
    assert 0 <= report["accuracy_vs_verifier"] <= 1
    labeled = [json.loads(line) for line in (tmp_path / "label/pairs/pairs.jsonl").read_text().splitlines()]
    assert len(labeled) == report["labeled_pairs"] and all(r["judge_confidence"] >= 0.5 for r in labeled)


def test_judge_cancels_position_bias():
    from llm_prefopt.judge import agreement_report

    # a judge that always prefers the first slot: both orders disagree, every pair is a tie
    report = agreement_report([(0.9, 0.1), (0.8, 0.2)], tie_margin=0.05)
    assert report["orders_agree"] == 0.0 and report["ties"] == 1.0 and report["first_slot_win_rate"] == 1.0


def test_cai_revise_and_constitution_check(tiny_checkpoint, pair_files, tmp_path, stages_runner):
    pytest.importorskip("llm_data")  # the toxicity filter comes from the registry
    constitution = tmp_path / "constitution.toml"
    constitution.write_text(CONSTITUTION)
    sampling = {"max_new_tokens": 8, "temperature": 1.0}
    stages = [{"name": "revise", "kind": "cai_revise", "threads": 1, "sampling": sampling, "max_prompts": 6,
               "inputs": {"checkpoint": tiny_checkpoint, "prompts": pair_files["problems"],
                          "constitution": str(constitution)}},
              {"name": "check", "kind": "constitution_check", "threads": 1, "sampling": sampling, "max_prompts": 6,
               "inputs": {"prompts": pair_files["problems"], "constitution": str(constitution),
                          "base": tiny_checkpoint}}]
    stages_runner(stages, str(tmp_path / "run"))
    report = json.loads((tmp_path / "run/revise/report.json").read_text())
    assert report["prompts"] == 6 and {"original/short", "revised/polite"} <= set(report)
    trace = (tmp_path / "run/revise/trace.jsonl").read_text().splitlines()
    assert len(trace) == 6 and {"critique", "revision", "principle"} <= set(json.loads(trace[0]))
    chats = (tmp_path / "run/revise/conversations/conversations.jsonl").read_text().splitlines()
    assert json.loads(chats[0])["messages"][-1]["role"] == "assistant"
    table = (tmp_path / "run/check/principles.md").read_text()
    assert "| base |" in table and "short" in table


def test_checks_pass_and_fail_as_written():
    pytest.importorskip("llm_data")
    import tomllib

    from llm_core.plugins import get_registries
    from llm_prefopt.cai import Checker, Constitution

    constitution = Constitution.model_validate(tomllib.loads(CONSTITUTION))
    checker = Checker(constitution, get_registries())
    short, polite = constitution.principles
    assert checker.passes(short, "q", "two words") and not checker.passes(short, "q", "one two three four")
    assert checker.passes(polite, "q", "hello there") and not checker.passes(polite, "q", "the answer")


def test_a_bad_constitution_names_its_file_and_field(tmp_path):
    from llm_prefopt.cai import load_constitution

    path = tmp_path / "bad.toml"
    path.write_text('[[principles]]\nname = "x"\ncritique = "c"\n')
    with pytest.raises(ValueError, match=r"bad.toml.*revision"):
        load_constitution(str(path))
