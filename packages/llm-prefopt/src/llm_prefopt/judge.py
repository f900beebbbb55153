"""RLAIF: an AI judge (any engine model with a rubric prompt) labels pairs, in both orders.

The judge reads a rubric rendered with the prompt and the two responses (``{prompt}``, ``{first}``,
``{second}``) as a user turn and is scored, not sampled: as in Lee et al. 2023 (RLAIF, Sec. 2.1),
the log-probabilities of the two answers (``answers``, default "1" and "2") after the generation
prompt, normalized by a softmax, give P(first is better). Each pair is judged twice, the
responses swapped the second time, and the two probabilities of "A is better" averaged, which
cancels a judge's position bias (its preference for the first or the second slot).

``ai_label`` stage: input ``pairs`` (``{prompt, chosen, rejected}`` records, whose labels the judge
ignores, or ``{prompt, completions: [a, b], reference?}``), ``judge`` (a checkpoint; or the
``judge.checkpoint`` option). With a ``verifier``, a pair whose responses the verifier tells apart
(exactly one passes) has a ground truth, and the judge's accuracy on those is reported. Writes
``pairs/pairs.jsonl`` (the judge's labels: chosen = its winner, with ``judge_confidence``) and
``report.json`` (agreement between orders, ties, first-slot win rate, accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from llm_core.artifacts import write_json
from llm_core.builtins.jsonl import write_records
from llm_core.config import Config
from llm_core.data_io import load_records
from llm_core.engines import TrainEngine
from llm_core.refs import VerifierRef
from llm_core.specs import EngineSpec
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import Message, StageResult
from llm_prefopt.pairs import completion_text as field_text
from llm_prefopt.sampling import prompt_ids, score

DEFAULT_RUBRIC = ("Which response answers the question better: it is correct, helpful, polite and stays on "
                  "topic.\n\nQuestion: {prompt}\n\nResponse 1: {first}\n\nResponse 2: {second}\n\n"
                  "Answer with 1 or 2 only.")


class AiLabelConfig(Config):
    engine: EngineSpec = Field(default_factory=EngineSpec, description="the engine that runs the judge")
    checkpoint: str | None = Field(None, description="the judge model (default: the 'judge' input)")
    rubric: str = Field(DEFAULT_RUBRIC, description="user turn shown to the judge: {prompt}, {first}, {second}")
    system_prompt: str = ""
    answers: tuple[str, str] = Field(("1", "2"), description="the judge's answer for the first / second response")
    tie_margin: float = Field(0.05, ge=0, lt=0.5, description="|P(A better) - 0.5| below this is a tie (no pair)")
    verifier: VerifierRef | None = Field(None, description="ground truth where it exists (e.g. math with references)")
    max_rejects_fraction: float = Field(0.5, ge=0, le=1)
    threads: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Candidate:
    id: str
    prompt: str
    a: str
    b: str
    reference: Any = None


def parse_candidate(record: dict[str, Any]) -> Candidate:
    if not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
        raise TypeError("expected a non-empty string field 'prompt'")
    if "completions" in record:
        pair = record["completions"]
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)):
            raise ValueError("field 'completions' must hold exactly two non-empty strings")
        a, b = pair
    else:
        a, b = field_text(record, "chosen"), field_text(record, "rejected")
    if a.strip() == b.strip():
        raise ValueError("the two responses are identical: nothing to judge")
    return Candidate(str(record.get("id", "")), record["prompt"], a, b, record.get("reference"))


class Judge:
    """P(first response is better) from a frozen model's log-probs of the two answers."""

    def __init__(self, engine: TrainEngine, rubric: str, answers: Sequence[str], system_prompt: str = ""):
        self.engine, self.rubric, self.system_prompt = engine, rubric, system_prompt
        tok = engine.tokenizer
        self.answer_ids = [tok.encode(a) for a in answers]

    def _context(self, prompt: str, first: str, second: str) -> list[int]:
        head = [Message("system", self.system_prompt)] if self.system_prompt else []
        text = self.rubric.format(prompt=prompt, first=first, second=second)
        return prompt_ids(self.engine.tokenizer, [*head, Message("user", text)])

    def first_wins(self, items: Sequence[tuple[str, str, str]]) -> list[float]:
        """For each (prompt, first, second): softmax over the two answers' summed log-probs."""
        rows, masks = [], []
        for prompt, first, second in items:
            context = self._context(prompt, first, second)
            for answer in self.answer_ids:
                rows.append(context + answer)
                masks.append([0] * len(context) + [1] * len(answer))
        logps: list[float] = []
        for start in range(0, len(rows), 16):
            batch = {"input_ids": rows[start:start + 16], "loss_mask": masks[start:start + 16]}
            logps += self.engine.logprobs(batch).sum(-1).tolist()
        out = []
        for i in range(0, len(logps), 2):
            first, second = logps[i], logps[i + 1]
            out.append(1.0 / (1.0 + math.exp(min(second - first, 700.0))))  # softmax of the two
        return out


def judge_both_orders(judge: Judge, candidates: Sequence[Candidate]) -> list[tuple[float, float]]:
    """(P(a better | a shown first), P(a better | a shown second)) per candidate pair."""
    forward = judge.first_wins([(c.prompt, c.a, c.b) for c in candidates])
    backward = judge.first_wins([(c.prompt, c.b, c.a) for c in candidates])
    return [(f, 1.0 - b) for f, b in zip(forward, backward, strict=True)]


def agreement_report(judged: Sequence[tuple[float, float]], tie_margin: float) -> dict[str, float]:
    """Agreement of the two orders, ties, and how often the first slot won (position bias)."""
    n = max(len(judged), 1)
    agree = sum((f > 0.5) == (s > 0.5) for f, s in judged)
    ties = sum(abs((f + s) / 2 - 0.5) < tie_margin for f, s in judged)
    first_slot = sum(f > 0.5 for f, _ in judged) + sum(s <= 0.5 for _, s in judged)
    return {"pairs_judged": len(judged), "orders_agree": agree / n, "ties": ties / n,
            "first_slot_win_rate": first_slot / (2 * n)}


class AiLabelStage:
    def __init__(self, config: AiLabelConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        c = self.config
        checkpoint = c.checkpoint or ctx.inputs.get("judge")
        if checkpoint is None:
            raise ValueError(f"stage {ctx.name!r}: name the judge model with a 'judge' input or checkpoint = ...")
        candidates = load_records(ctx.input("pairs"), parse_candidate, rejects_uri=ctx.path("rejects.jsonl"),
                                  what="pairs to judge", max_rejects_fraction=c.max_rejects_fraction)
        judge = Judge(ctx.train_engine(c.engine, checkpoint=checkpoint), c.rubric, c.answers, c.system_prompt)
        judged = judge_both_orders(judge, candidates)
        report = agreement_report(judged, c.tie_margin)
        records = []
        for i, (cand, (f, s)) in enumerate(zip(candidates, judged, strict=True)):
            p_a = (f + s) / 2
            if abs(p_a - 0.5) < c.tie_margin:
                continue
            chosen, rejected = (cand.a, cand.b) if p_a > 0.5 else (cand.b, cand.a)
            records.append({"id": cand.id or f"pair-{i}", "prompt": cand.prompt, "chosen": chosen,
                            "rejected": rejected, "judge_confidence": round(max(p_a, 1 - p_a), 4)})
        if c.verifier is not None:
            report.update(self.accuracy(ctx, candidates, judged))
        write_records(ctx.path("pairs", "pairs.jsonl"), records)
        report["labeled_pairs"] = len(records)
        write_json(ctx.path("report.json"), report)
        ctx.log_metrics(report)
        return StageResult(metrics={k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()},
                           artifacts={"pairs": ctx.path("pairs"), "report": ctx.path("report.json")})

    def accuracy(self, ctx: StageContext, candidates: Sequence[Candidate],
                 judged: Sequence[tuple[float, float]]) -> dict[str, float]:
        """The judge's accuracy on the pairs a verifier separates (exactly one response passes)."""
        verifier = self.config.verifier.build(ctx.registries)
        prompts = [c.prompt for c in candidates for _ in (0, 1)]
        texts = [t for c in candidates for t in (c.a, c.b)]
        verdicts = score(verifier, prompts, texts, [c.reference for c in candidates for _ in (0, 1)])
        right = total = 0
        for i, (f, s) in enumerate(judged):
            a_pass, b_pass = verdicts[2 * i].passed, verdicts[2 * i + 1].passed
            if a_pass != b_pass:
                total += 1
                right += ((f + s) / 2 > 0.5) == a_pass
        return {"pairs_with_truth": total, "accuracy_vs_verifier": right / total if total else float("nan")}
