"""What the RL stages share: problems on disk, prompt rendering, sampling with overlapped verification.

Problems are records ``{"prompt": str, "reference": any, "id": str?}`` (JSONL, Parquet or a saved
HF dataset); malformed ones go to a rejects file with file, line and reason. Generation runs in
chunks of prompts: while the engine samples chunk ``i + 1``, the verifier pool is already judging
chunk ``i``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from llm_core.chat import render_prompt
from llm_core.engines import RolloutEngine
from llm_core.specs import SamplingSpec
from llm_core.types import Problem, Sample, Verdict
from llm_rlvr.options import PromptSpec

log = logging.getLogger("llmt.rlvr")




@dataclass
class Group:
    """One prompt's samples and their verdicts."""

    problem: Problem
    prompt_ids: list[int]
    samples: list[Sample]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def rewards(self) -> list[float]:
        return [v.score for v in self.verdicts]


@dataclass
class RolloutStats:
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    verify_wait_seconds: float = 0.0  # time spent waiting for verdicts after generation ended

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else 0.0


def sample_and_verify(engine: RolloutEngine, pool: Any, problems: list[Problem], n: int, sampling: SamplingSpec,
                      prompt: PromptSpec, chunk_prompts: int = 16) -> tuple[list[Group], RolloutStats]:
    """``n`` samples per problem from ``engine``, each judged by ``pool`` (verification overlaps
    the generation of the next chunk). Completions are scored with the response prefix prepended,
    since the model's answer starts there."""
    tok = engine.tokenizer
    response_prefix = prompt.response_prefix
    groups = [Group(p, render_prompt(tok, p.prompt, system_prompt=prompt.system_prompt,
                                     response_prefix=response_prefix, prompt_format=prompt.prompt_format), [])
              for p in problems]
    stats = RolloutStats()
    pending = []
    for c in range(math.ceil(len(groups) / chunk_prompts)):
        chunk = groups[c * chunk_prompts:(c + 1) * chunk_prompts]
        chunk_sampling = sampling if sampling.seed is None else sampling.with_seed(sampling.seed + c)
        start = time.perf_counter()
        outputs = engine.generate([g.prompt_ids for g in chunk], n=n, sampling=chunk_sampling)
        stats.generate_seconds += time.perf_counter() - start
        for group, samples in zip(chunk, outputs, strict=True):
            group.samples = samples
            stats.generated_tokens += sum(len(s.token_ids) for s in samples)
            futures = [pool.submit(group.problem.prompt, response_prefix + completion_text(tok, s),
                                   group.problem.reference) for s in samples]
            pending.append((group, futures))
    start = time.perf_counter()
    for group, futures in pending:
        group.verdicts = [f.result() for f in futures]
    stats.verify_wait_seconds = time.perf_counter() - start
    return groups, stats


def completion_text(tokenizer: Any, sample: Sample) -> str:
    """The sample's text without the end-of-turn / EOS token that stopped it."""
    ids = sample.token_ids
    if sample.finish_reason == "stop" and ids:
        ids = ids[:-1]
    return tokenizer.decode(ids)
