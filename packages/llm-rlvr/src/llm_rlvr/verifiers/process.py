"""Process rewards: per-step scores from a step scorer (a process reward model) become one reward.

A step scorer is any registered verifier that also has ``score_steps(prompt, steps) -> list[float]``
(the :class:`StepScorer` protocol): a learned PRM wrapped by a plugin, or the rule-based
``arithmetic_steps`` below, which checks every ``a op b = c`` written in a step.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field, model_validator

from llm_core.config import Config
from llm_core.refs import VerifierRef, fold_options
from llm_core.types import Verdict
from llm_rlvr.verifiers.combine import build_verifier

Aggregate = Literal["min", "mean", "last", "product"]
_EQUATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x×])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)")


@runtime_checkable
class StepScorer(Protocol):
    """Scores each reasoning step in [0, 1] given the steps before it (a PRM's interface)."""

    def score_steps(self, prompt: str, steps: Sequence[str]) -> list[float]: ...


def split_steps(completion: str, separator: str) -> list[str]:
    think = re.search(r"<think>(.*?)</think>", completion, re.DOTALL)
    body = think.group(1) if think else completion
    return [s.strip() for s in re.split(separator, body) if s.strip()]


class ArithmeticStepsVerifier:
    """Rule-based step scorer: a step scores 1 when every ``a op b = c`` in it is arithmetically true."""

    def score_steps(self, prompt: str, steps: Sequence[str]) -> list[float]:
        scores = []
        for step in steps:
            equations = _EQUATION.findall(step)
            scores.append(float(all(_holds(*eq) for eq in equations)) if equations else 1.0)
        return scores

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        scores = self.score_steps(prompt, split_steps(completion, r"\n"))
        ok = bool(scores) and min(scores) == 1.0
        return Verdict(float(ok), ok, f"{sum(scores):g}/{len(scores)} steps correct")


def _holds(a: str, op: str, b: str, c: str) -> bool:
    x, y, z = float(a), float(b), float(c)
    value = {"+": x + y, "-": x - y, "*": x * y, "x": x * y, "×": x * y}.get(op)
    if value is None:
        value = x / y if y else math.nan
    return math.isclose(value, z, rel_tol=1e-9, abs_tol=1e-9)


class ProcessRewardConfig(Config):
    scorer: VerifierRef = Field(description="registered verifier implementing score_steps (a PRM)")
    aggregate: Aggregate = Field("min", description="how step scores become one reward")
    step_separator: str = Field(r"\n", description="regex splitting the reasoning into steps")
    pass_threshold: float = Field(0.5, description="reward at or above which the sample passes")

    fold_scorer_options = model_validator(mode="before")(fold_options("scorer", "scorer_options"))


class ProcessRewardVerifier:
    """Splits the reasoning into steps, scores them with a PRM, aggregates (min by default)."""

    def __init__(self, config: ProcessRewardConfig):
        self.scorer = build_verifier(config.scorer)
        if not isinstance(self.scorer, StepScorer):
            raise TypeError(f"verifier {config.scorer.name!r} has no score_steps(prompt, steps); it cannot "
                            "score steps")
        self.aggregate, self.separator = config.aggregate, config.step_separator
        self.pass_threshold = config.pass_threshold

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        start = time.perf_counter()
        steps = split_steps(completion, self.separator)
        if not steps:
            return Verdict(0.0, False, "no steps", time.perf_counter() - start)
        scores = self.scorer.score_steps(prompt, steps)
        if self.aggregate == "min":
            reward = min(scores)
        elif self.aggregate == "mean":
            reward = sum(scores) / len(scores)
        elif self.aggregate == "last":
            reward = scores[-1]
        else:
            reward = math.prod(scores)
        return Verdict(reward, reward >= self.pass_threshold, f"{len(steps)} steps, {self.aggregate}={reward:.3g}",
                       time.perf_counter() - start)
