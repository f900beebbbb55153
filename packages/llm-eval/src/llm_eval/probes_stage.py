"""``long_context_probes``: the probes of ``llm_eval.probes`` over a grid of lengths (and depths), per checkpoint.

Inputs: ``checkpoint``, or several named checkpoints (``base = "...", yarn = "..."``), compared in one
table. For each checkpoint, items are generated with its own tokenizer (so lengths are real token
counts), answered greedily, and scored by string match. Writes ``<stage>/<checkpoint>/items.jsonl``
(every item with its prediction and score), ``<checkpoint>/needle_heatmap.png`` (single-needle
accuracy over length x depth), ``probes.json`` and ``table.md``: per checkpoint and length, the
single-needle accuracy beside the multi-needle, multi-hop (variable tracking), aggregation (common
words) and BABILong tasks, since passing the needle alone is not long-context reasoning.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open, write_json
from llm_core.config import Config
from llm_core.specs import RolloutSpec, SamplingSpec
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import StageResult
from llm_eval.generation import PromptSpec, completion_text
from llm_eval.plots import heatmap
from llm_eval.probes import TASKS, ProbeItem, build, score

Task = Literal["niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "variable_tracking",
               "common_words", "babilong_qa1", "babilong_qa2"]


class LongContextProbesConfig(Config):
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="the engine that answers")
    lengths: list[int] = Field(default_factory=lambda: [1024, 2048, 4096], description="prompt lengths in tokens")
    depths: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0],
                                description="needle positions (0: start, 1: end), for the needle tasks")
    tasks: list[Task] = Field(default_factory=lambda: list(TASKS))
    samples: int = Field(4, ge=1, description="items per task and length (per depth for the needle tasks)")
    max_new_tokens: int = Field(32, ge=1, description="answer length")
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    batch_size: int = Field(4, ge=1, description="prompts per generate call")
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _grid(self) -> LongContextProbesConfig:
        if not self.lengths or min(self.lengths) < 64:
            raise ValueError(f"lengths must be at least 64 tokens each, got {self.lengths}")
        if any(not 0 <= d <= 1 for d in self.depths):
            raise ValueError(f"depths must lie in [0, 1], got {self.depths}")
        return self


class LongContextProbesStage:
    def __init__(self, config: LongContextProbesConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        checkpoints = dict(ctx.inputs)
        if not checkpoints:
            raise ValueError(f"stage {ctx.name!r}: give a 'checkpoint' input (or several named checkpoints)")
        with limit_threads(self.config.threads):
            results = {name: self.probe(ctx, name, uri) for name, uri in checkpoints.items()}
        write_json(ctx.path("probes.json"), {"checkpoints": list(results), "results": results,
                                             "lengths": self.config.lengths, "depths": self.config.depths})
        with atomic_open(ctx.path("table.md"), "wt", encoding="utf-8") as handle:
            handle.write(render_table(results, self.config))
        metrics = {f"{task}@{length}/{name}": round(acc, 4) for name, r in results.items()
                   for task, by_length in r["accuracy"].items() for length, acc in by_length.items()}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"table": ctx.path("table.md"),
                                                       "results": ctx.path("probes.json")})

    def items(self, tokenizer: Any, seed: int) -> list[ProbeItem]:
        c = self.config

        def prompt_tokens(context: str, question: str) -> int:
            return len(c.prompt.ids(tokenizer, f"{context}\n\n{question}"))

        out = []
        for task in c.tasks:
            depths = c.depths if task.startswith("niah") else [0.5]
            for length in c.lengths:
                for depth in depths:
                    out += [build(task, length, depth, seed * 10_007 + k, tokenizer, prompt_tokens)
                            for k in range(c.samples)]
        return out

    def probe(self, ctx: StageContext, name: str, uri: str) -> dict[str, Any]:
        c = self.config
        engine = ctx.rollout_engine(c.rollout, checkpoint=uri, max_seq_len=max(c.lengths) + c.max_new_tokens + 8)
        tok = engine.tokenizer
        items = self.items(tok, ctx.seed)
        greedy = SamplingSpec(max_new_tokens=c.max_new_tokens, temperature=0.0)
        scored = []
        for start in range(0, len(items), c.batch_size):
            batch = items[start:start + c.batch_size]
            prompts = [c.prompt.ids(tok, f"{it.context}\n\n{it.question}") for it in batch]
            for item, samples in zip(batch, engine.generate(prompts, n=1, sampling=greedy), strict=True):
                prediction = completion_text(tok, samples[0])
                scored.append({**item.to_dict(), "prediction": prediction, "score": score(item, prediction)})
        with atomic_open(ctx.path(name, "items.jsonl"), "wt", encoding="utf-8") as handle:
            handle.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in scored)
        accuracy: dict[str, dict[int, float]] = {}
        for task in c.tasks:
            for length in c.lengths:
                cell = [s["score"] for s in scored if s["task"] == task and s["length"] == length]
                accuracy.setdefault(task, {})[length] = sum(cell) / len(cell)
        grid = [[_mean([s["score"] for s in scored if s["task"] == "niah_single" and s["length"] == length
                        and s["depth"] == depth]) for length in c.lengths] for depth in c.depths]
        if "niah_single" in c.tasks:
            heatmap(grid, [f"{d:.2f}" for d in c.depths], [str(n) for n in c.lengths],
                    ctx.path(name, "needle_heatmap.png"), title=f"{name}: single needle",
                    xlabel="context length (tokens)", ylabel="needle depth")
        return {"accuracy": accuracy, "needle_grid": grid, "items": len(scored)}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


GROUPS = (("single needle", ("niah_single",)),
          ("multi-needle", ("niah_multikey", "niah_multivalue", "niah_multiquery")),
          ("multi-hop", ("variable_tracking",)), ("aggregation", ("common_words",)),
          ("facts in noise", ("babilong_qa1", "babilong_qa2")))


def render_table(results: dict[str, Any], c: LongContextProbesConfig) -> str:
    tasks = [t for t in TASKS if t in c.tasks]
    group_of = {t: g for g, members in GROUPS for t in members}
    lines = [f"Long-context probes: {c.samples} items per task and length (x {len(c.depths)} depths for the needle "
             "tasks), greedy answers, string-match accuracy. Single-needle retrieval beside multi-hop, "
             "aggregation and facts-in-noise tasks: passing the needle alone is not long-context reasoning.", "",
             "| checkpoint | length | " + " | ".join(f"{t} ({group_of[t]})" for t in tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    for name, r in results.items():
        for length in c.lengths:
            lines.append(f"| {name} | {length} | " + " | ".join(f"{r['accuracy'][t][length]:.2f}" for t in tasks)
                         + " |")
    return "\n".join(lines) + "\n"
