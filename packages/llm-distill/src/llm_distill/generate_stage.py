"""The ``teacher_generate`` stage: the teacher answers prompts, a verifier (optionally) keeps the good
answers, and the result is an SFT set: hard-label KD, DeepSeek-R1's distillation step.

Inputs: ``teacher`` (a checkpoint folder, generated from by any registered rollout engine) and
``problems``: records ``{"prompt": str, "reference": any, "id": str?}`` (JSONL, Parquet or a saved
HF dataset; ``reference`` is needed only with a verifier). For every prompt the teacher samples
``samples_per_prompt`` answers; those that pass ``verifier`` (and reach ``min_score``) are kept,
deduplicated on whitespace-normalized text, at most ``keep_per_prompt`` per prompt. Without a
verifier every distinct answer is kept. Output: ``conversations/conversations.jsonl`` in the chat
format the ``sft`` and ``distill`` stages read, and ``report.json``. Keeping nothing is an error.
"""

from __future__ import annotations

import logging
import math

from pydantic import Field

from llm_core.artifacts import write_json
from llm_core.builtins.jsonl import write_records
from llm_core.chat import render_prompt
from llm_core.config import Config
from llm_core.data_io import load_problems
from llm_core.engines import RolloutEngine
from llm_core.protocols import Verifier
from llm_core.refs import VerifierRef
from llm_core.specs import RolloutSpec
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import Problem, Sample, StageResult
from llm_distill.distill_stage import require_checkpoint
from llm_distill.options import DistillSampling, PromptSpec

log = logging.getLogger("llmt.distill")


class TeacherGenerateConfig(Config):
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="the engine the teacher samples with")
    verifier: VerifierRef | None = Field(None, description="keep only answers it passes; null: keep every one")
    min_score: float | None = Field(None, description="also require this verifier score")
    samples_per_prompt: int = Field(4, ge=1)
    keep_per_prompt: int = Field(1, ge=1, description="distinct kept answers per prompt")
    max_prompts: int | None = Field(None, ge=1, description="the first N problems (default: all)")
    sampling: DistillSampling = Field(default_factory=DistillSampling)
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    chunk_prompts: int = Field(16, ge=1, description="prompts per generate call")
    seed_offset: int = Field(0, description="added to the stage seed for sampling")
    max_rejects_fraction: float = Field(0.5, ge=0, le=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads")




def completion_text(engine: RolloutEngine, sample: Sample) -> str:
    """The sample's text without the end-of-turn / EOS token that stopped it."""
    ids = sample.token_ids[:-1] if sample.finish_reason == "stop" and sample.token_ids else sample.token_ids
    return engine.tokenizer.decode(ids)


class TeacherGenerateStage:
    def __init__(self, config: TeacherGenerateConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        o = self.config
        teacher_uri = ctx.input("teacher")
        require_checkpoint(teacher_uri, "teacher", ctx.name)
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"), o.max_rejects_fraction,
                                 need_reference=o.verifier is not None)[: o.max_prompts]
        verifier: Verifier | None = o.verifier.build(ctx.registries) if o.verifier is not None else None
        engine = ctx.rollout_engine(o.rollout, checkpoint=teacher_uri)
        chats, counts = [], {"samples": 0, "passed": 0, "duplicates": 0, "solved_prompts": 0, "tokens": 0}
        for start in range(0, len(problems), o.chunk_prompts):
            chunk = problems[start:start + o.chunk_prompts]
            groups = self.generate(engine, chunk, start // o.chunk_prompts + ctx.seed + o.seed_offset)
            for problem, samples in zip(chunk, groups, strict=True):
                kept = self.keep(engine, verifier, problem, samples, counts)
                chats += [{"id": f"{problem.id}-{i + 1}", "messages": self.messages(problem, text)}
                          for i, text in enumerate(kept)]
                counts["solved_prompts"] += bool(kept)
        write_records(ctx.path("conversations", "conversations.jsonl"), chats)
        tokens = counts.pop("tokens")
        report = {"prompts": len(problems), **counts, "kept": len(chats),
                  "pass_rate": counts["passed"] / max(1, counts["samples"]),
                  "mean_sample_tokens": tokens / max(1, counts["samples"])}
        write_json(ctx.path("report.json"), report)
        ctx.log_metrics(report)
        if not chats:
            what = f"passed {o.verifier.name!r}" if o.verifier is not None else "was generated"
            raise ValueError(f"stage {ctx.name!r}: the SFT set is empty: no answer to {len(problems)} prompts "
                             f"{what}; sample more (samples_per_prompt, max_prompts), check the verifier "
                             "and the prompt format, or start from a stronger teacher")
        return StageResult(metrics={k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v
                                    for k, v in report.items()},
                           artifacts={"conversations": ctx.path("conversations")})

    def generate(self, engine: RolloutEngine, problems: list[Problem], seed: int) -> list[list[Sample]]:
        o = self.config
        prompts = [render_prompt(engine.tokenizer, p.prompt, system_prompt=o.prompt.system_prompt,
                                 response_prefix=o.prompt.response_prefix) for p in problems]
        return engine.generate(prompts, n=o.samples_per_prompt, sampling=o.sampling.with_seed(seed))

    def keep(self, engine: RolloutEngine, verifier: Verifier | None, problem: Problem, samples: list[Sample],
             counts: dict[str, int]) -> list[str]:
        """The distinct answers of one prompt worth training on (verified, when there is a verifier)."""
        o = self.config
        kept: list[str] = []
        seen: set[str] = set()
        for sample in samples:
            counts["samples"] += 1
            counts["tokens"] += len(sample.token_ids)
            text = o.prompt.response_prefix + completion_text(engine, sample)
            if verifier is not None:
                verdict = verifier.verify(problem.prompt, text, problem.reference)
                if not verdict.passed or (o.min_score is not None and verdict.score < o.min_score):
                    continue
            counts["passed"] += 1
            key = " ".join(text.split())
            if key in seen:
                counts["duplicates"] += 1
            elif len(kept) < o.keep_per_prompt:
                seen.add(key)
                kept.append(text)
        return kept

    def messages(self, problem: Problem, text: str) -> list[dict[str, str]]:
        system = self.config.prompt.system_prompt
        messages = [{"role": "system", "content": system}] if system else []
        return messages + [{"role": "user", "content": problem.prompt}, {"role": "assistant", "content": text}]
