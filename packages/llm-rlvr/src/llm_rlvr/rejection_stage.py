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
from llm_core.data_io import load_problems
from llm_core.specs import DecontaminateSpec
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import StageResult
from llm_rlvr.options import RolloutOptions
from llm_rlvr.rollout import completion_text, sample_and_verify


class RejectionSamplingConfig(RolloutOptions):
    samples_per_prompt: int = Field(8, ge=1)
    max_prompts: int | None = Field(None, ge=1, description="use the first N problems (default: all)")
    keep_per_prompt: int = Field(2, ge=1, description="distinct correct completions kept per prompt")
    min_score: float | None = Field(None, description="also require this score (e.g. correct AND formatted)")
    seed_offset: int = Field(0, description="added to the stage seed for sampling")
    decontaminate: DecontaminateSpec | None = Field(None, description="a load-time gate on 'problems': a "
                                                    "registered filter (e.g. contamination) drops or refuses them")


class RejectionSamplingStage:
    def __init__(self, config: RejectionSamplingConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        from llm_rlvr.pool import VerifierPool

        o = self.config
        gate = ctx.record_gate(o.decontaminate)
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"), gate=gate)[: o.max_prompts]
        engine = ctx.rollout_engine(o.rollout_spec(), checkpoint=ctx.input("checkpoint"))
        sampling = o.sampling.with_seed(ctx.seed + o.seed_offset)
        with VerifierPool(o.verifier, workers=o.verifier.workers, timeout_s=o.verifier.timeout_s) as pool:
            groups, stats = sample_and_verify(engine, pool, problems, o.samples_per_prompt, sampling, o.prompt,
                                              o.chunk_prompts)
        chats, solved, duplicates, correct = [], 0, 0, 0
        for group in groups:
            seen: set[str] = set()
            for sample, verdict in zip(group.samples, group.verdicts, strict=True):
                if not verdict.passed or (o.min_score is not None and verdict.score < o.min_score):
                    continue
                correct += 1
                text = o.prompt.response_prefix + completion_text(engine.tokenizer, sample)
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
                             f"{o.verifier.name!r}; sample more (samples_per_prompt) or start from a stronger model")
        return StageResult(metrics={k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                                    for k, v in report.items()},
                           artifacts={"conversations": ctx.path("conversations")})


def _messages(o: RejectionSamplingConfig, group: Any, text: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": o.prompt.system_prompt}] if o.prompt.system_prompt else []
    return messages + [{"role": "user", "content": group.problem.prompt}, {"role": "assistant", "content": text}]

