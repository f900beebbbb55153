"""What the generative evaluations share: problems on disk, prompt rendering, sampling in chunks.

Problems are records ``{"prompt": str, "reference": any, "id": str?}`` (JSONL, Parquet or a saved HF
dataset, through ``llm_core.data_io``); malformed ones go to a rejects file with file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_core.engines import RolloutEngine
from llm_core.specs import PromptSpec, SamplingSpec
from llm_core.types import Sample


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
