"""Verifiers built from other verifiers: a format check, weighted sums, a length penalty.

Components are named registered verifiers, built through the registry, so a plugin's verifier can
be mixed in exactly like a built-in one.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import Field, model_validator

from llm_core.config import Config
from llm_core.refs import VerifierRef, fold_options
from llm_core.types import Verdict

R1_FORMAT = r"^\s*<think>.+?</think>\s*<answer>.+?</answer>\s*$"


def build_verifier(ref: VerifierRef) -> Any:
    from llm_core.plugins import get_registries

    return ref.build(get_registries())


class FormatConfig(Config):
    pattern: str = Field(R1_FORMAT, description="regex the whole completion must match (DOTALL)")

    @model_validator(mode="after")
    def _compiles(self) -> FormatConfig:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        return self


class FormatVerifier:
    """1.0 when the completion matches the structure regex (default: <think>...</think><answer>...)."""

    def __init__(self, config: FormatConfig):
        self.regex = re.compile(config.pattern, re.DOTALL)

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        ok = self.regex.search(completion) is not None
        return Verdict(float(ok), ok, "format ok" if ok else "format mismatch")


class Component(Config):
    """One weighted part: ``{verifier = "math", weight = 1.0}`` (options beside the name, or in
    ``verifier = {name, options}``)."""

    verifier: VerifierRef
    weight: float = 1.0

    fold_verifier_options = model_validator(mode="before")(fold_options("verifier"))


class WeightedConfig(Config):
    components: list[Component] = Field(min_length=1, description="verifiers and their weights")
    pass_from: int = Field(0, ge=0, description="index of the component whose pass/fail is reported")

    @model_validator(mode="after")
    def _index_in_range(self) -> WeightedConfig:
        if self.pass_from >= len(self.components):
            raise ValueError(f"pass_from={self.pass_from} but there are {len(self.components)} components")
        return self


class WeightedVerifier:
    """Score = sum of weight * component score (e.g. 1.0 * math + 0.2 * format)."""

    def __init__(self, config: WeightedConfig):
        self.weights = [c.weight for c in config.components]
        self.names = [c.verifier.name for c in config.components]
        self.parts = [build_verifier(c.verifier) for c in config.components]
        self.pass_from = config.pass_from

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        verdicts = [p.verify(prompt, completion, reference) for p in self.parts]
        score = sum(w * v.score for w, v in zip(self.weights, verdicts, strict=True))
        reason = "; ".join(f"{n}={v.score:g}" for n, v in zip(self.names, verdicts, strict=True))
        return Verdict(score, verdicts[self.pass_from].passed, reason, sum(v.cost for v in verdicts))


class LengthPenaltyConfig(Config):
    verifier: VerifierRef = Field(description="the verifier whose score is penalized")
    max_chars: int = Field(gt=0, description="completions longer than this get the full penalty")
    buffer_chars: int = Field(0, ge=0, description="penalty ramps linearly over the last buffer_chars")
    penalty: float = Field(1.0, ge=0, description="amount subtracted at and beyond max_chars")

    fold_verifier_options = model_validator(mode="before")(fold_options("verifier"))


class LengthPenaltyVerifier:
    """The inner score minus a soft overlong penalty (DAPO): 0 up to max - buffer, then linear."""

    def __init__(self, config: LengthPenaltyConfig):
        self.inner = build_verifier(config.verifier)
        self.max_chars, self.buffer_chars, self.penalty = config.max_chars, config.buffer_chars, config.penalty

    def penalty_for(self, length: int) -> float:
        start = self.max_chars - self.buffer_chars
        if length <= start:
            return 0.0
        if length >= self.max_chars or self.buffer_chars == 0:
            return self.penalty
        return self.penalty * (length - start) / self.buffer_chars

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict:
        start = time.perf_counter()
        inner = self.inner.verify(prompt, completion, reference)
        cut = self.penalty_for(len(completion))
        reason = inner.reason + (f"; length penalty {cut:.3g}" if cut else "")
        return Verdict(inner.score - cut, inner.passed, reason, inner.cost + time.perf_counter() - start)
