"""What the generative evaluations share: problems on disk, prompt rendering, sampling in chunks.

Problems are records ``{"prompt": str, "reference": any, "id": str?}`` (JSONL, Parquet or a saved HF
dataset, through ``llm_core.data_io``); malformed ones go to a rejects file with file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from llm_core.chat import render_prompt
from llm_core.config import Config
from llm_core.data_io import load_records
from llm_core.engines import RolloutEngine
from llm_core.specs import SamplingSpec
from llm_core.types import Sample


class PromptSpec(Config):
    """How a problem becomes the prompt the model answers (the same fields as the RL stages')."""

    system_prompt: str = ""
    prompt_format: str | None = Field(None, description="plain-text prompt with {prompt} for a base model; "
                                      "default: the checkpoint's chat template")
    response_prefix: str = Field("", description="text the answer starts with (e.g. '<think>')")

    @field_validator("prompt_format")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "{prompt}" not in value:
            raise ValueError("prompt_format must contain the placeholder {prompt}")
        return value

    def ids(self, tokenizer: Any, prompt: str) -> list[int]:
        return render_prompt(tokenizer, prompt, system_prompt=self.system_prompt,
                             response_prefix=self.response_prefix, prompt_format=self.prompt_format)


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str
    reference: Any


def parse_problem(record: dict[str, Any]) -> Problem:
    if not isinstance(record.get("prompt"), str):
        raise TypeError("expected an object with a string field 'prompt'")
    if "reference" not in record:
        raise ValueError("missing field 'reference' (the known answer)")
    return Problem(str(record.get("id", "")), record["prompt"], record["reference"])


def load_problems(uri: str, rejects_uri: str, limit: int | None = None) -> list[Problem]:
    problems = load_records(uri, parse_problem, rejects_uri=rejects_uri, what="problems")[:limit]
    return [p if p.id else Problem(f"problem-{i}", p.prompt, p.reference) for i, p in enumerate(problems)]


@dataclass
class Completion:
    text: str  # the response prefix plus the decoded sample, without its stop token
    tokens: int


def completion_text(tokenizer: Any, sample: Sample) -> str:
    ids = sample.token_ids[:-1] if sample.finish_reason == "stop" and sample.token_ids else sample.token_ids
    return tokenizer.decode(ids)


def sample_completions(engine: RolloutEngine, prompts: list[str], n: int, sampling: SamplingSpec,
                       prompt: PromptSpec, chunk_prompts: int = 16) -> list[list[Completion]]:
    """``n`` completions per prompt, generated ``chunk_prompts`` prompts at a time (chunk ``c``
    sampled with seed ``sampling.seed + c``, so results do not depend on the machine)."""
    tok = engine.tokenizer
    out: list[list[Completion]] = []
    for c, start in enumerate(range(0, len(prompts), chunk_prompts)):
        chunk = [prompt.ids(tok, p) for p in prompts[start:start + chunk_prompts]]
        chunk_sampling = sampling if sampling.seed is None else sampling.with_seed(sampling.seed + c)
        for samples in engine.generate(chunk, n=n, sampling=chunk_sampling):
            out.append([Completion(prompt.response_prefix + completion_text(tok, s), len(s.token_ids))
                        for s in samples])
    return out
