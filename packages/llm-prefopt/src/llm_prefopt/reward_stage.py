"""The ``reward_model`` stage: a Bradley-Terry reward model on preference pairs, held-out accuracy.

Inputs: ``checkpoint`` (the model the RM starts from; a scalar value head is added), ``pairs`` and
optionally ``heldout`` (pairs whose pairwise accuracy is reported before, during and after
training). Writes ``checkpoint/`` (an HF folder with the value head, which the ``reward_model``
verifier loads) and ``report.json``. Resumable through the one training loop.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llm_core.artifacts import write_json
from llm_core.engines import TrainEngine
from llm_core.refs import LossRef
from llm_core.specs import ScheduleName
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.training import StatelessCallback
from llm_core.types import StageResult
from llm_prefopt.options import PrefOptimizer, PrefTraining, step_indices, train_and_export
from llm_prefopt.pairs import EncodedPair, load_pairs, pair_rows
from llm_prefopt.reward_model import score_rows


class RewardOptimizer(PrefOptimizer):
    lr: float = Field(1e-5, gt=0, description="peak learning rate")
    schedule: ScheduleName = "constant"


class RewardModelStageConfig(PrefTraining):
    optimizer: RewardOptimizer = Field(default_factory=RewardOptimizer)
    loss: LossRef = Field(default_factory=lambda: LossRef(name="bradley_terry"))
    eval_every: int | None = Field(None, ge=1, description="held-out accuracy every N steps ('heldout' input)")
    heldout_pairs: int = Field(500, ge=1)


def pairwise_accuracy(engine: TrainEngine, pairs: list[EncodedPair]) -> dict[str, float]:
    """Share of held-out pairs the model ranks right (r_chosen > r_rejected), and the mean margin."""
    scores = score_rows(engine, [r.ids for r in pair_rows(pairs)])
    chosen, rejected = scores[0::2], scores[1::2]
    right = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {"heldout_accuracy": right / len(pairs), "heldout_margin": sum(margins) / len(pairs)}


class HeldoutAccuracy(StatelessCallback):
    name = "heldout_accuracy"

    def __init__(self, pairs: list[EncodedPair], every: int):
        self.pairs, self.every = pairs, every

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        if (step + 1) % self.every == 0:
            metrics.update(pairwise_accuracy(engine, self.pairs))


class RewardModelStage:
    def __init__(self, config: RewardModelStageConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        c = self.config
        checkpoint = ctx.input("checkpoint")
        engine = ctx.train_engine(c.engine, checkpoint=checkpoint, optimizer=c.optimizer, value_head=True,
                                  total_steps=c.steps)
        load = {"max_length": c.max_length, "system_prompt": c.prompt.system_prompt,
                "max_rejects_fraction": c.max_rejects_fraction}
        pairs = load_pairs(ctx.input("pairs"), engine.tokenizer, rejects_uri=ctx.path("rejects.jsonl"), **load,
                           gate=ctx.record_gate(c.decontaminate))
        heldout = []
        if "heldout" in ctx.inputs:
            heldout = load_pairs(ctx.input("heldout"), engine.tokenizer,
                                 rejects_uri=ctx.path("heldout_rejects.jsonl"), **load)[: c.heldout_pairs]
        steps = c.total_steps(len(pairs))
        if steps != c.steps:  # epochs: the schedule needs the real length
            engine = ctx.train_engine(c.engine, checkpoint=checkpoint, optimizer=c.optimizer, value_head=True,
                                      total_steps=steps)
        rows = pair_rows(pairs)
        margins = [p.margin for p in pairs]
        use_margin = any(m is not None for m in margins)

        def make_step(step: int) -> dict[str, Any]:
            chosen = step_indices(len(pairs), ctx.seed, step, c.batch_size)
            batch_rows = [rows[2 * i + side] for i in chosen for side in (0, 1)]
            batch: dict[str, Any] = {"input_ids": [list(r.ids) for r in batch_rows],
                                     "last_index": [len(r.ids) - 1 for r in batch_rows]}
            if use_margin:
                batch["margin"] = [margins[i] or 0.0 for i in chosen for _ in (0, 1)]
            return batch

        before_training = pairwise_accuracy(engine, heldout) if heldout else {}
        callbacks = [HeldoutAccuracy(heldout, c.eval_every)] if heldout and c.eval_every else []
        summary = {"stage": "reward_model", "loss": c.loss.name}
        result = train_and_export(ctx, engine, c, make_step, c.loss.build(ctx.registries), steps, callbacks,
                                  summary, headline="accuracy", rows_per_example=2)
        report = {"pairs": len(pairs), "heldout_pairs": len(heldout), "steps": steps}
        if heldout:
            after = pairwise_accuracy(engine, heldout)
            report.update({f"{k}_before": v for k, v in before_training.items()}, **after)
            result.metrics.update({k: round(v, 4) for k, v in after.items()})
        write_json(ctx.path("report.json"), report)
        ctx.log_metrics({k: v for k, v in report.items() if isinstance(v, float)})
        return result
