"""The ``rejection_sampling`` stage: sample N per prompt, keep verified-correct completions, write SFT chats.

Kept completions are deduplicated per prompt (whitespace-normalized text), at most
``keep_per_prompt`` each, and written as ``conversations/conversations.jsonl`` in the chat format
the ``sft`` stage reads. ``report.json`` counts prompts, solved prompts, kept and duplicates.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from llm_core.artifacts import write_json
from llm_core.builtins.jsonl import write_records
from llm_core.stage import StageContext
from llm_core.types import SamplingParams, StageResult
from llm_rlvr.grpo_stage import RolloutOptions
from llm_rlvr.rollout import completion_text, limit_threads, load_problems, sample_and_verify


class RejectionSamplingConfig(RolloutOptions):
    samples_per_prompt: int = Field(8, ge=1)
    max_prompts: int | None = Field(None, ge=1, description="use the first N problems (default: all)")
    keep_per_prompt: int = Field(2, ge=1, description="distinct correct completions kept per prompt")
    min_score: float | None = Field(None, description="also require this score (e.g. correct AND formatted)")
    seed_offset: int = Field(0, description="added to the stage seed for sampling")


class RejectionSamplingStage:
    def __init__(self, **options: Any):
        self.o = RejectionSamplingConfig(**options)

    def run(self, ctx: StageContext) -> StageResult:
        from llm_rlvr.pool import VerifierPool

        o = self.o
        limit_threads(o.threads)
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"))[: o.max_prompts]
        engine = ctx.registries.rollout_engines.build(o.engine, {"checkpoint": ctx.input("checkpoint"),
                                                                 "trainable": False, "device": o.device})
        sampling = SamplingParams(max_new_tokens=o.max_new_tokens, temperature=o.temperature, top_p=o.top_p,
                                  top_k=o.top_k, seed=ctx.seed + o.seed_offset)
        with VerifierPool(o.verifier, o.verifier_options, workers=o.verifier_workers,
                          timeout_s=o.verifier_timeout_s) as pool:
            groups, stats = sample_and_verify(engine, pool, problems, o.samples_per_prompt, sampling,
                                              response_prefix=o.response_prefix, system_prompt=o.system_prompt,
                                              prompt_format=o.prompt_format,
                                              chunk_prompts=o.chunk_prompts)
        chats, solved, duplicates, correct = [], 0, 0, 0
        for group in groups:
            seen: set[str] = set()
            for sample, verdict in zip(group.samples, group.verdicts, strict=True):
                if not verdict.passed or (o.min_score is not None and verdict.score < o.min_score):
                    continue
                correct += 1
                text = o.response_prefix + completion_text(engine.tokenizer, sample)
                key = " ".join(text.split())
                if key in seen:
                    duplicates += 1
                    continue
                if len(seen) < o.keep_per_prompt:
                    seen.add(key)
                    chats.append({"id": f"{group.problem.id}-{len(seen)}", "messages": _messages(o, group, text)})
            solved += bool(seen)
        write_records(ctx.path("conversations", "conversations.jsonl"), chats)
        report = {"prompts": len(groups), "samples": len(groups) * o.samples_per_prompt, "correct": correct,
                  "solved_prompts": solved, "kept": len(chats), "duplicates": duplicates,
                  "pass_rate": correct / max(1, len(groups) * o.samples_per_prompt),
                  "rollout_tokens_per_s": stats.tokens_per_second}
        write_json(ctx.path("report.json"), report)
        ctx.log_metrics(report)
        if not chats:
            raise ValueError(f"rejection sampling kept nothing: no sample of {len(groups)} prompts passed "
                             f"{o.verifier!r}; sample more (samples_per_prompt) or start from a stronger model")
        return StageResult(metrics={k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                                    for k, v in report.items()},
                           artifacts={"conversations": ctx.path("conversations")})


def _messages(o: RejectionSamplingConfig, group: Any, text: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": o.system_prompt}] if o.system_prompt else []
    return messages + [{"role": "user", "content": group.problem.prompt}, {"role": "assistant", "content": text}]
