"""The ``preference_pairs`` stage: preference pairs from a file, or built on policy from scored samples.

* **From a file** (input ``pairs``: JSONL, Parquet or a saved HF dataset): every record validated
  (``llm_prefopt.pairs``), the malformed ones counted and written to ``rejects.jsonl``.
* **On policy** (inputs ``checkpoint`` and ``problems``): ``samples_per_prompt`` samples per prompt,
  each scored by ``verifier`` (any registered verifier, the ``reward_model`` scorer included), then
  paired: ``correct_vs_incorrect`` (a passing sample over a failing one) or ``best_vs_worst`` (the
  highest score over the lowest, when they differ). A prompt whose samples all tie gives no pair.

Writes ``pairs/pairs.jsonl`` (TRL's format plus the scores), optionally ``heldout/pairs.jsonl``
(``heldout_fraction`` of the prompts) and ``report.json``.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field

from llm_core.artifacts import write_json
from llm_core.builtins.jsonl import write_records
from llm_core.data_io import load_records
from llm_core.refs import VerifierRef
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import StageResult, Verdict
from llm_prefopt.options import GenerationOptions
from llm_prefopt.pairs import parse_pair
from llm_prefopt.sampling import completion_text, generate, load_problems, prompt_ids, score, user_turn

Pairing = Literal["correct_vs_incorrect", "best_vs_worst"]


class PreferencePairsConfig(GenerationOptions):
    verifier: VerifierRef | None = Field(None, description="scores on-policy samples (e.g. math, or reward_model)")
    samples_per_prompt: int = Field(4, ge=2)
    max_prompts: int | None = Field(None, ge=1, description="use the first N prompts (default: all)")
    pairing: Pairing = "correct_vs_incorrect"
    heldout_fraction: float = Field(0.0, ge=0, lt=1, description="share of prompts written to heldout/ instead")
    max_rejects_fraction: float = Field(0.5, ge=0, le=1)


def choose_pair(texts: list[str], verdicts: list[Verdict], pairing: Pairing,
                rng: random.Random) -> tuple[int, int] | None:
    """(chosen, rejected) sample indices of one prompt, or None when its samples give no preference."""
    distinct = {}
    for i, text in enumerate(texts):
        distinct.setdefault(" ".join(text.split()), i)
    keep = sorted(distinct.values())
    if pairing == "correct_vs_incorrect":
        good = [i for i in keep if verdicts[i].passed]
        bad = [i for i in keep if not verdicts[i].passed]
        return (rng.choice(good), rng.choice(bad)) if good and bad else None
    best = max(keep, key=lambda i: verdicts[i].score)
    worst = min(keep, key=lambda i: verdicts[i].score)
    return (best, worst) if verdicts[best].score > verdicts[worst].score else None


class PreferencePairsStage:
    def __init__(self, config: PreferencePairsConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            if "pairs" in ctx.inputs:
                records, report = self.from_file(ctx)
            elif "checkpoint" in ctx.inputs and "problems" in ctx.inputs:
                records, report = self.on_policy(ctx)
            else:
                raise ValueError(f"stage {ctx.name!r} needs either a 'pairs' input (a file of pairs) or "
                                 "'checkpoint' and 'problems' inputs (pairs sampled on policy)")
        if not records:
            raise ValueError(f"stage {ctx.name!r} produced no pairs ({report}); sample more per prompt "
                             "(samples_per_prompt) or use pairing = \"best_vs_worst\"")
        heldout_count = round(len(records) * self.config.heldout_fraction)
        rng = random.Random(ctx.seed)
        order = list(range(len(records)))
        rng.shuffle(order)
        heldout = [records[i] for i in sorted(order[:heldout_count])]
        train = [records[i] for i in sorted(order[heldout_count:])]
        write_records(ctx.path("pairs", "pairs.jsonl"), train)
        artifacts = {"pairs": ctx.path("pairs")}
        if heldout:
            write_records(ctx.path("heldout", "pairs.jsonl"), heldout)
            artifacts["heldout"] = ctx.path("heldout")
        report.update(pairs=len(train), heldout_pairs=len(heldout))
        write_json(ctx.path("report.json"), report)
        ctx.log_metrics(report)
        return StageResult(metrics=report, artifacts=artifacts)

    def from_file(self, ctx: StageContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        c = self.config

        def parse(record: dict[str, Any]) -> dict[str, Any]:
            parse_pair(record)  # raises naming what is wrong
            return record

        records = load_records(ctx.input("pairs"), parse, rejects_uri=ctx.path("rejects.jsonl"),
                               what="preference pairs", max_rejects_fraction=c.max_rejects_fraction)
        return records, {"source": "file", "read": len(records)}

    def on_policy(self, ctx: StageContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        c = self.config
        if c.verifier is None:
            raise ValueError(f"stage {ctx.name!r}: on-policy pairs need a verifier (verifier = \"math\", or "
                             "{name = \"reward_model\", options = {checkpoint = ...}})")
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"))[: c.max_prompts]
        engine = ctx.rollout_engine(c.engine, checkpoint=ctx.input("checkpoint"))
        tok = engine.tokenizer
        ids = [prompt_ids(tok, user_turn(p.prompt, c.prompt.system_prompt)) for p in problems]
        groups = generate(engine, ids, c.samples_per_prompt, c.sampling.with_seed(ctx.seed), c.chunk_prompts)
        verifier = c.verifier.build(ctx.registries)
        rng = random.Random(ctx.seed)
        records, passed, total = [], 0, 0
        for problem, samples in zip(problems, groups, strict=True):
            texts = [completion_text(tok, s) for s in samples]
            verdicts = score(verifier, [problem.prompt] * len(texts), texts, [problem.reference] * len(texts))
            passed += sum(v.passed for v in verdicts)
            total += len(verdicts)
            picked = choose_pair(texts, verdicts, c.pairing, rng)
            if picked is None:
                continue
            good, bad = picked
            records.append({"id": problem.id, "prompt": problem.prompt, "chosen": texts[good], "rejected": texts[bad],
                            "chosen_score": verdicts[good].score, "rejected_score": verdicts[bad].score})
        return records, {"source": "on_policy", "prompts": len(problems), "samples": total,
                         "pass_rate": round(passed / max(total, 1), 4),
                         "prompts_without_pair": len(problems) - len(records)}
