"""What the RL stages share: problems on disk, prompt rendering, sampling with overlapped verification.

Problems are JSONL records ``{"prompt": str, "reference": any, "id": str?}``; malformed lines go
to a rejects file with file, line and reason. Generation runs in chunks of prompts: while the
engine samples chunk ``i + 1``, the verifier pool is already judging chunk ``i``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import fsspec

from llm_core.builtins.filter_stage import list_input_files
from llm_core.builtins.jsonl import write_records
from llm_core.types import Sample, SamplingParams, Verdict

log = logging.getLogger("llmt.rlvr")


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str
    reference: Any


def load_problems(uri: str, rejects_uri: str, max_rejects_fraction: float = 0.5) -> list[Problem]:
    """Every problem of the input (a file or a folder of JSONL); bad lines go to ``rejects_uri``."""
    problems, rejects = [], []
    for file in list_input_files(uri):
        with fsspec.open(file, "rt", encoding="utf-8", compression="infer") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                        raise TypeError("expected an object with a string field 'prompt'")
                    if "reference" not in record:
                        raise ValueError("missing field 'reference' (the known answer)")
                except (ValueError, TypeError) as exc:
                    rejects.append({"source": file, "line": line_no, "error": str(exc), "raw": line.rstrip()[:2000]})
                    continue
                problems.append(Problem(str(record.get("id", f"{file}:{line_no}")), record["prompt"],
                                        record["reference"]))
    if rejects:
        write_records(rejects_uri, rejects)
        log.warning("%d malformed problems written to %s", len(rejects), rejects_uri)
    total = len(problems) + len(rejects)
    if not problems or len(rejects) > max_rejects_fraction * total:
        first = rejects[0] if rejects else {"source": uri, "line": "-", "error": "no problems"}
        raise ValueError(f"{len(rejects)} of {total} problems are malformed (see {rejects_uri}); first: "
                         f"{first['source']}:{first['line']}: {first['error']}")
    return problems


def render_prompt(tokenizer: Any, prompt: str, system_prompt: str = "", response_prefix: str = "",
                  prompt_format: str | None = None) -> list[int]:
    """Token ids of the prompt, ready for the model to answer (plus an optional response prefix).

    With ``prompt_format`` (e.g. ``"Question: {prompt}\\nSolution:"``) the prompt is plain text, for
    a base model that has no chat template (R1-Zero); otherwise the tokenizer's chat template.
    """
    if prompt_format is not None:
        return tokenizer.encode(prompt_format.format(prompt=prompt) + response_prefix)
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    messages.append({"role": "user", "content": prompt})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True) + response_prefix
    return tokenizer.encode(text)


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


def sample_and_verify(engine: Any, pool: Any, problems: list[Problem], n: int, sampling: SamplingParams,
                      *, response_prefix: str = "", system_prompt: str = "", chunk_prompts: int = 16,
                      prompt_format: str | None = None) -> tuple[list[Group], RolloutStats]:
    """``n`` samples per problem from ``engine``, each judged by ``pool`` (verification overlaps
    the generation of the next chunk). Completions are scored with the response prefix prepended,
    since the model's answer starts there."""
    tok = engine.tokenizer
    groups = [Group(p, render_prompt(tok, p.prompt, system_prompt, response_prefix, prompt_format), [])
              for p in problems]
    stats = RolloutStats()
    pending = []
    for c in range(math.ceil(len(groups) / chunk_prompts)):
        chunk = groups[c * chunk_prompts:(c + 1) * chunk_prompts]
        chunk_sampling = sampling if sampling.seed is None else _with_seed(sampling, sampling.seed + c)
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


def limit_threads(threads: int | None) -> None:
    """Set torch's CPU threads for this stage's process (None: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def completion_text(tokenizer: Any, sample: Sample) -> str:
    """The sample's text without the end-of-turn / EOS token that stopped it."""
    ids = sample.token_ids
    if sample.finish_reason == "stop" and ids:
        ids = ids[:-1]
    return tokenizer.decode(ids)


def _with_seed(sampling: SamplingParams, seed: int) -> SamplingParams:
    from dataclasses import replace

    return replace(sampling, seed=seed)
