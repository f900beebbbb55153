"""The RL stages on a toy model: grpo (metrics, resume), rejection_sampling, rlvr_eval, data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llm_rlvr.arithmetic import cold_start_chats, one_line_expression, split_problems

# A reward that varies even for an untrained model (so groups are not uniform): shorter is better.
SHORT_REWARD = {"verifier": {"name": "length_penalty", "workers": 0,
                             "options": {"verifier": "format", "options": {"pattern": ".*"}, "max_chars": 80,
                                         "buffer_chars": 70}}}


def grpo_stage(name="grpo", steps=3, kl_coef=0.0, **extra):
    return {"name": name, "kind": "grpo", "inputs": {"checkpoint": "cold_start/checkpoint",
                                                      "problems": "data/train", "heldout": "data/heldout"},
            **SHORT_REWARD, "group_size": 4, "prompts_per_step": 3, "steps": steps, "optimizer": {"lr": 1e-3},
            "loss": {"name": "grpo", "options": {"kl_coef": kl_coef}},
            "sampling": {"max_new_tokens": 16}, "threads": 1, "eval": {"every": 2, "problems": 8}, **extra}


def _base(tiny_run: str, root: Path):
    """The shared toy run's completed stages, copied so each test owns its folder."""
    import shutil

    shutil.copytree(tiny_run, root, dirs_exist_ok=True)


def _metrics(root: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (root / stage / "metrics.jsonl").read_text().splitlines()]


def test_arithmetic_problems_are_correct_and_split():
    train, heldout = split_problems(0, 500, 500)
    assert len(heldout) == 500
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}
    for p in train + heldout:
        value = None
        for step in p.steps:
            a, op, b, _, c = step.split()
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == int(c)
            value = int(c)
        assert value == p.answer and p.answer >= 0


def test_one_line_expression_keeps_the_value():
    import random

    assert one_line_expression(("30 + 8 = 38", "38 * 4 = 152")) == "(30 + 8) * 4"
    assert one_line_expression(("3 * 6 = 18", "18 - 4 = 14")) == "3 * 6 - 4"
    train, _ = split_problems(1, 400, 1)
    for p in train:  # the expression is plain arithmetic, so Python's own evaluation checks it
        assert eval(one_line_expression(p.steps)) == p.answer
    chats = cold_start_chats(train, 0.25, random.Random(0))
    one_line = [c for c in chats if c["messages"][1]["content"].count("=") == 1]
    assert len(one_line) == 100 and len(chats) == 400


def test_cold_start_traces_satisfy_the_rewards(tiny_run):
    from llm_core.plugins import get_registries

    math_v, fmt = get_registries().verifiers.build("math"), get_registries().verifiers.build("format")
    problems = {json.loads(x)["prompt"]: json.loads(x)["reference"]
                for x in (Path(tiny_run) / "data/train/problems.jsonl").read_text().splitlines()}
    lines = (Path(tiny_run) / "data/traces/conversations.jsonl").read_text().splitlines()
    assert len(lines) == 64
    assert sum(json.loads(line)["messages"][1]["content"].count("=") == 1 for line in lines) == 32  # terse
    for line in lines:
        user, assistant = json.loads(line)["messages"]
        assert math_v.verify("", assistant["content"], problems[user["content"]]).passed
        assert fmt.verify("", assistant["content"], None).passed


def test_grpo_logs_what_users_need(tiny_run, tmp_path, recipe_runner):
    _base(tiny_run, tmp_path)
    recipe_runner([grpo_stage(kl_coef=0.05, ppo_epochs=2, mini_batches=2)], str(tmp_path))
    records = _metrics(tmp_path, "grpo")
    steps = [m for m in records if "reward_mean" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]
    for key in ("reward_mean", "reward_std", "pass_rate", "response_len", "entropy", "kl", "clip_fraction",
                "logprob_gap", "rollout_tokens_per_s", "loss", "grad_norm"):
        assert key in steps[-1], key
    # On-policy, the sampler and the trainer agree on the sampled tokens' logprobs.
    assert all(m["logprob_gap"] < 1e-3 for m in steps)
    assert [m["step"] for m in records if "eval_pass_at_1" in m] == [0, 2]
    assert (tmp_path / "grpo/checkpoint/model.safetensors").exists()


def test_grpo_separate_rollout_engine_and_rollout_old_logprobs(tiny_run, tmp_path, recipe_runner, caplog):
    """A separate rollout engine fed the policy's weights every step, its log-probs as the ratio's
    denominator: the gap is logged every step, and a warning fires above ``warn_gap``."""
    _base(tiny_run, tmp_path)
    stage = grpo_stage(rollout={"name": "torch"}, old_logprobs={"source": "rollout", "warn_gap": 1e-12})
    with caplog.at_level("WARNING", logger="llmt.rlvr"):
        recipe_runner([stage], str(tmp_path))
    steps = [m for m in _metrics(tmp_path, "grpo") if "reward_mean" in m]
    assert len(steps) == 3
    assert all(0 <= m["logprob_gap"] <= m["logprob_gap_max"] < 1e-3 for m in steps)
    assert all(abs(m["ratio_mean"] - 1.0) < 1e-3 for m in steps), "on the first epoch the ratio starts at 1"
    assert "rollout and trainer log-probs of the sampled tokens differ" in caplog.text


def test_build_batch_old_logprobs_from_trainer_or_rollout():
    import torch

    from llm_core.types import Problem, Sample, Verdict
    from llm_rlvr.grpo_stage import Components, build_batch
    from llm_rlvr.rollout import Group

    class Scorer:  # a trainer whose log-prob of every label is -1
        def logprobs(self, batch):
            width = max(len(r) for r in batch["input_ids"])
            return torch.full((len(batch["input_ids"]), width), -1.0)

    samples = [Sample([1, 2, 3], [4, 5], [-0.5, -0.25]), Sample([1, 2, 3], [6], [-2.0])]
    group = Group(Problem("p", "q", 1), [1, 2, 3], samples, [Verdict(1.0, True), Verdict(0.0, False)])
    parts = Components(Scorer(), None, None, lambda r: r - r.mean(1, keepdim=True), None, None)
    rows, gap = build_batch(parts, [group], skip_uniform=True, old_source="rollout")
    assert rows["old_logprobs"] == [[0.0, 0.0, -0.5, -0.25, 0.0], [0.0, 0.0, -2.0, 0.0]]
    assert gap.mean == pytest.approx(((0.5 + 0.75) / 2 + 1.0) / 2) and gap.max == pytest.approx(1.0)
    trainer_rows, _ = build_batch(parts, [group], skip_uniform=True)
    assert trainer_rows["old_logprobs"] == [[-1.0] * 5, [-1.0] * 4]


def test_build_batch_without_the_scoring_pass():
    """An update on the policy that sampled the batch: no trainer pass, the sampler's logprobs go to
    the loss (to measure the gap), and old logprobs only where they are the sampler's."""
    from llm_core.types import Problem, Sample, Verdict
    from llm_rlvr.grpo_stage import Components, build_batch
    from llm_rlvr.rollout import Group

    class NoScoring:
        def logprobs(self, batch):
            raise AssertionError("the scoring pass ran")

    samples = [Sample([1, 2, 3], [4, 5], [-0.5, -0.25]), Sample([1, 2, 3], [6], [-2.0])]
    group = Group(Problem("p", "q", 1), [1, 2, 3], samples, [Verdict(1.0, True), Verdict(0.0, False)])
    parts = Components(NoScoring(), None, None, lambda r: r - r.mean(1, keepdim=True), None, None)
    rows, gap = build_batch(parts, [group], skip_uniform=True, score=False)
    assert gap is None and "old_logprobs" not in rows
    assert rows["rollout_logprobs"] == [[0.0, 0.0, -0.5, -0.25, 0.0], [0.0, 0.0, -2.0, 0.0]]
    rows, _ = build_batch(parts, [group], skip_uniform=True, old_source="rollout", score=False)
    assert rows["old_logprobs"] == rows["rollout_logprobs"]


def test_diagnostics_take_the_update_as_the_old_policy_and_measure_the_gap():
    import torch

    from llm_core.plugins import get_registries
    from llm_rlvr.grpo_stage import with_diagnostics

    loss = with_diagnostics(get_registries().losses.get("grpo").build({"kl_coef": 0.0}))
    logits = torch.randn(2, 4, 7, requires_grad=True)
    labels = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    logprobs = logits.log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1)
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    advantages = torch.tensor([1.0, -1.0])
    rollout = logprobs.detach() + torch.tensor([[9.0, 0.1, -0.3, 9.0], [9.0, 0.2, 9.0, 9.0]])
    value, metrics = loss(logits, logprobs, advantages, mask, rollout_logprobs=rollout)
    explicit, _ = loss(logits, logprobs, advantages, mask, old_logprobs=logprobs.detach())
    assert torch.equal(value, explicit)  # no old logprobs: the update's own, detached
    assert float(metrics["ratio_mean"]) == 1.0 and float(metrics["clip_fraction"]) == 0.0
    assert float(metrics["logprob_gap"]) == pytest.approx(((0.1 + 0.3) / 2 + 0.2) / 2)
    assert float(metrics["logprob_gap_max"]) == pytest.approx(0.3)
    value.backward()
    assert logits.grad.abs().sum() > 0


def test_grpo_skips_the_scoring_pass_on_policy_with_the_same_training(tiny_run, tmp_path, recipe_runner):
    """One optimizer step per batch of rollouts: the update's forward gives the old logprobs, and
    the run trains as with the scoring pass (forced by one micro-batch of the whole batch)."""
    runs = {}
    for name, extra in (("on_policy", {}), ("scored", {"micro_batch_size": 1000})):
        root = tmp_path / name
        _base(tiny_run, root)
        recipe_runner([grpo_stage(kl_coef=0.05, **extra)], str(root))
        runs[name] = [m for m in _metrics(root, "grpo") if "reward_mean" in m]
    assert len(runs["on_policy"]) == 3
    for fast, scored in zip(runs["on_policy"], runs["scored"], strict=True):
        assert fast["reward_mean"] == scored["reward_mean"]  # the same samples, step after step
        for key in ("loss", "kl", "grad_norm", "entropy", "logprob_gap", "logprob_gap_max"):
            assert fast[key] == pytest.approx(scored[key], rel=1e-3, abs=1e-5), key
        assert fast["ratio_mean"] == 1.0 and 0 <= fast["logprob_gap"] < 1e-3


def test_grpo_rejects_kl_for_a_loss_without_it(tiny_run, tmp_path, recipe_runner):
    from llm_core.errors import RecipeError

    _base(tiny_run, tmp_path)
    stage = grpo_stage(steps=1, loss={"name": "cross_entropy", "options": {"kl_coef": 0.1}})
    with pytest.raises(RecipeError, match=r"stages.grpo.loss.options.kl_coef: unknown option"):
        recipe_runner([stage], str(tmp_path))


def test_grpo_resume_matches_uninterrupted(tiny_run, tmp_path, recipe_runner, monkeypatch):
    from llm_rlvr.grpo_stage import GrpoStage

    stage = grpo_stage(steps=4, checkpoint_every=2, kl_coef=0.05)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    _base(tiny_run, whole)
    _base(tiny_run, broken)
    recipe_runner([stage], str(whole))

    original = GrpoStage.plan_step

    def dies_at_step_3(self, ctx, parts, problems, step):
        if step == 3:
            raise KeyboardInterrupt("killed")
        return original(self, ctx, parts, problems, step)

    monkeypatch.setattr(GrpoStage, "plan_step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        recipe_runner([stage], str(broken))
    assert (broken / "grpo/resume/latest.json").exists()
    monkeypatch.setattr(GrpoStage, "plan_step", original)
    recipe_runner([stage], str(broken))

    from safetensors.torch import load_file

    a = load_file(whole / "grpo/checkpoint/model.safetensors")
    b = load_file(broken / "grpo/checkpoint/model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "resumed run differs from the uninterrupted one"
    rewards = {m["step"]: m["reward_mean"] for m in _metrics(whole, "grpo") if "reward_mean" in m}
    resumed = {m["step"]: m["reward_mean"] for m in _metrics(broken, "grpo") if "reward_mean" in m}
    assert resumed == rewards
    logged = [m["step"] for m in _metrics(broken, "grpo") if "reward_mean" in m]
    assert logged == sorted(set(logged)), "no step is logged twice across the resume"


def test_rejection_sampling_keeps_verified_distinct(tiny_run, tmp_path, recipe_runner):
    _base(tiny_run, tmp_path)
    rs = {"name": "rs", "kind": "rejection_sampling",
          "inputs": {"checkpoint": "cold_start/checkpoint", "problems": "data/train"},
          "verifier": {"name": "format", "options": {"pattern": ".*"}, "workers": 0},
          "sampling": {"temperature": 0.0, "max_new_tokens": 12},
          "samples_per_prompt": 3, "max_prompts": 5, "keep_per_prompt": 2}
    recipe_runner([rs], str(tmp_path))
    report = json.loads((tmp_path / "rs/report.json").read_text())
    # Greedy: the 3 samples of a prompt are identical, so 1 is kept and 2 are duplicates.
    assert report["kept"] == 5 and report["duplicates"] == 10 and report["solved_prompts"] == 5
    chats = [json.loads(x) for x in (tmp_path / "rs/conversations/conversations.jsonl").read_text().splitlines()]
    assert [c["messages"][1]["role"] for c in chats] == ["assistant"] * 5

    never = {**rs, "name": "rs_none",
             "verifier": {"name": "math", "options": {"last_number_fallback": False}, "workers": 0}}
    with pytest.raises(ValueError, match="kept nothing"):
        recipe_runner([never], str(tmp_path))


def test_mean_interval():
    from llm_core.stats import mean_interval

    low, high = mean_interval([0.0, 0.5, 1.0, 0.5] * 25)
    # mean 0.5, sd 0.3553 (n-1), half-width 1.96 * 0.3553 / 10
    assert low == pytest.approx(0.5 - 0.06964, abs=1e-4) and high == pytest.approx(0.5 + 0.06964, abs=1e-4)


def test_wilson_interval():
    from llm_core.stats import wilson_interval

    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 500)[0] == 0.0 and wilson_interval(0, 500)[1] == pytest.approx(0.00762, abs=1e-4)


def test_eval_table_and_plot(tiny_run, tmp_path, recipe_runner, capsys):
    _base(tiny_run, tmp_path)
    ev = {"name": "eval", "kind": "rlvr_eval", "inputs": {"problems": "data/heldout", "base": "cold_start/checkpoint",
                                                         "grpo": "grpo/checkpoint"},
          "compare": [["base", "grpo"]], "sampling": {"max_new_tokens": 12}, "verifier": {"workers": 0},
          "max_problems": 20,
          "sampled_temperature": 1.0, "samples_per_problem": 2}
    recipe_runner([grpo_stage(steps=2), ev], str(tmp_path))
    table = (tmp_path / "eval/pass_at_1.md").read_text()
    assert re.search(r"\| grpo \| \d\.\d{3} \| \[\d\.\d{3}, \d\.\d{3}\] \| \d+/20 \| \d+\.\d \| \d\.\d{3} \|", table)
    assert "grpo vs base (greedy)" in table and "grpo vs base (sampled)" in table
    assert "| format, greedy | format, sampled |" in table
    rows = json.loads((tmp_path / "eval/results.json").read_text())["rows"]
    for row in rows:
        assert 0.0 <= row["format_ci_low"] <= row["format"] <= row["format_ci_high"] <= 1.0
        assert 0.0 <= row["sampled_format"] <= 1.0
    assert "held-out pass@1" in capsys.readouterr().out
    png = (tmp_path / "eval/curves.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_eval_in_parallel_gives_the_rows_of_one_process(tiny_run, tmp_path, recipe_runner):
    """parallel = true: each checkpoint scored in its own worker process (the local executor, two
    workers, each with its own verifier pool) gives exactly the rows of one process."""
    _base(tiny_run, tmp_path)
    ev = {"kind": "rlvr_eval", "inputs": {"problems": "data/heldout", "base": "cold_start/checkpoint",
                                          "grpo": "grpo/checkpoint"},
          "sampling": {"max_new_tokens": 12}, "max_problems": 12, "threads": 1,
          "sampled_temperature": 1.0, "samples_per_problem": 2}
    recipe_runner([grpo_stage(steps=1), {"name": "serial", **ev, "verifier": {"workers": 0}},
                   {"name": "parallel", **ev, "verifier": {"workers": 1}, "parallel": True,
                    "executor": {"kind": "local", "workers": 2}}], str(tmp_path))

    def rows(stage):
        return json.loads((tmp_path / stage / "results.json").read_text())["rows"]

    assert [r["name"] for r in rows("parallel")] == ["base", "grpo"]
    assert rows("parallel") == rows("serial")
    assert sorted(p.name for p in (tmp_path / "parallel" / "_shards").iterdir()) == ["base.json", "grpo.json"]


def test_format_shares_score_each_sample_as_the_verifier_sees_it():
    from llm_core.types import Problem, Sample
    from llm_rlvr.eval_stage import RlvrEvalConfig, format_shares
    from llm_rlvr.rollout import Group

    class Letters:  # a tokenizer whose ids are character codes
        def decode(self, ids):
            return "".join(map(chr, ids))

    def sample(text, reason="length"):
        ids = [ord(c) for c in text] + ([0] if reason == "stop" else [])
        return Sample(prompt_ids=[1], token_ids=ids, logprobs=[0.0] * len(ids), text="", finish_reason=reason)

    good, bad = "<think>2 + 2 = 4</think> <answer>4</answer>", "<think>2 + 2 = 4</think> 4"
    groups = [Group(Problem("a", "2 + 2?", "4"), [1], [sample(good, "stop"), sample(bad)]),
              Group(Problem("b", "1 + 1?", "2"), [1], [sample(good), sample(good, "stop")])]
    assert format_shares(Letters(), groups, RlvrEvalConfig()) == [0.5, 1.0]
    # with a response prefix the model's text starts after it, and the prefix is scored with it
    prefixed = [Group(Problem("c", "3?", "3"), [1], [sample(good.removeprefix("<think>"))])]
    assert format_shares(Letters(), prefixed, RlvrEvalConfig(prompt={"response_prefix": "<think>"})) == [1.0]
    assert format_shares(Letters(), prefixed, RlvrEvalConfig()) == [0.0]


def test_bad_problem_records_are_rejected_with_location(tmp_path):
    from llm_core.data_io import load_problems

    src = tmp_path / "p.jsonl"
    src.write_text('{"prompt": "1+1?", "reference": "2"}\nnot json\n{"prompt": "x"}\n'
                   '{"prompt": "2+2", "reference": 4}\n')
    problems = load_problems(str(src), str(tmp_path / "rejects.jsonl"))
    assert [p.reference for p in problems] == ["2", 4]
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3] and "reference" in rejects[1]["error"]


def test_rlvr_never_imports_the_engine():
    src = Path(__file__).parents[1] / "src"
    offenders = [p for p in src.rglob("*.py") if re.search(r"^\s*(from|import) llm_torch", p.read_text(), re.MULTILINE)]
    assert not offenders


def test_validate_names_every_bad_component_at_once():
    from llm_core.config import validate_recipe
    from llm_core.errors import RecipeError
    from llm_core.plugins import get_host

    host = get_host()
    recipe = {"name": "bad", "stages": [
        {"name": "data", "kind": "arithmetic_problems"},
        {"name": "g", "kind": "grpo", "inputs": {"checkpoint": "data", "problems": "data/train"},
         "verifier": "mathh", "estimator": "rlooo", "loss": {"name": "grpo", "options": {"clip_low": 2.0}},
         "seed": "abc"}]}
    with pytest.raises(RecipeError) as error:
        validate_recipe(recipe, host.registries, host)
    text = str(error.value)
    assert "stages.g.verifier: unknown verifier 'mathh'; did you mean 'math'?" in text
    assert "stages.g.estimator: unknown advantage estimator 'rlooo'" in text
    assert "stages.g.loss.options.clip_low" in text
    assert "stages.g.seed" in text  # a bad field of the stage hides none of its components' problems
