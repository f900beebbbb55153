"""The ``dpo`` stage: any pairwise loss by name (dpo, ipo, hinge, robust, simpo, orpo) on preference pairs.

Inputs: ``checkpoint`` (the policy to start from, also the reference unless ``reference`` is given),
``pairs`` (records as ``llm_prefopt.pairs`` reads them), optionally ``heldout`` (pairs for the
held-out margin / accuracy every ``eval_every`` steps) and ``reference`` (another checkpoint).
Every step of the one training loop takes ``batch_size`` pairs (a seeded permutation per epoch),
interleaves their chosen / rejected rows and adds each row's cached reference log-prob
(``ref_logps``) when the loss needs one. A killed run resumes from ``resume/`` with the same result.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from llm_core.engines import TrainEngine
from llm_core.refs import LossRef
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.training import StatelessCallback
from llm_core.types import StageResult
from llm_prefopt.monitor import CollapseMonitor, CollapseMonitorConfig
from llm_prefopt.options import PrefTraining, step_indices, train_and_export
from llm_prefopt.pairs import EncodedPair, Row, batch_of, label_mask, load_pairs, pair_rows
from llm_prefopt.reference import ReferenceLogps, ReferenceMode

log = logging.getLogger("llmt.prefopt")


class DpoStageConfig(PrefTraining):
    loss: LossRef = Field(default_factory=lambda: LossRef(name="dpo"),
                          description="dpo, ipo, hinge, robust, simpo, orpo (or any pairwise loss)")
    reference: ReferenceMode = Field("cached", description="cached: reference log-probs computed once per data "
                                     "set (one model in memory); live: a frozen reference model scores each batch")
    monitor: CollapseMonitorConfig | None = Field(default_factory=CollapseMonitorConfig,
                                                  description="mode-collapse warning; null: off")
    eval_every: int | None = Field(None, ge=1, description="held-out margin and accuracy every N steps "
                                   "(needs the 'heldout' input)")
    heldout_pairs: int = Field(200, ge=1, description="held-out pairs evaluated")


class HeldoutPairs(StatelessCallback):
    """The loss's metrics (margin, accuracy...) on held-out pairs, as ``eval/...``, every ``every`` steps."""

    name = "heldout_pairs"

    def __init__(self, pairs: list[EncodedPair], ref_logps: list[float] | None, loss: Any, every: int):
        self.rows = pair_rows(pairs)
        self.ref_logps, self.loss, self.every = ref_logps, loss, every

    def evaluate(self, engine: TrainEngine) -> dict[str, float]:
        import torch

        width = max(len(r.ids) for r in self.rows)
        logprobs = torch.zeros(len(self.rows), width)
        for start in range(0, len(self.rows), 16):  # chunks pad to their own width; lay them side by side
            chunk = engine.logprobs(batch_of(self.rows[start:start + 16]))
            logprobs[start:start + chunk.shape[0], :chunk.shape[1]] = chunk
        mask = torch.zeros_like(logprobs)
        for i, row in enumerate(label_mask(self.rows)):
            mask[i, :len(row)] = torch.tensor(row)
        extra = {} if self.ref_logps is None else {"ref_logps": torch.tensor(self.ref_logps)}
        with torch.no_grad():
            loss, metrics = self.loss(logprobs, mask, **extra)
        return {"eval/loss": float(loss), **{f"eval/{k}": float(v) for k, v in metrics.items()}}

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        if (step + 1) % self.every == 0:
            metrics.update(self.evaluate(engine))


class DpoStage:
    def __init__(self, config: DpoStageConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        c = self.config
        checkpoint = ctx.input("checkpoint")
        loss = c.loss.build(ctx.registries)
        needs_reference = getattr(loss, "needs_reference", True)
        reference = ReferenceLogps(ctx, c.engine, ctx.inputs.get("reference", checkpoint), c.reference)
        tokenizer = reference.engine.tokenizer  # the reference shares the policy's tokenizer
        pairs = load_pairs(ctx.input("pairs"), tokenizer, rejects_uri=ctx.path("rejects.jsonl"),
                           max_length=c.max_length, system_prompt=c.prompt.system_prompt,
                           max_rejects_fraction=c.max_rejects_fraction, gate=ctx.record_gate(c.decontaminate))
        heldout = []
        if c.eval_every and "heldout" in ctx.inputs:
            heldout = load_pairs(ctx.input("heldout"), tokenizer, rejects_uri=ctx.path("heldout_rejects.jsonl"),
                                 max_length=c.max_length, system_prompt=c.prompt.system_prompt,
                                 max_rejects_fraction=c.max_rejects_fraction)[: c.heldout_pairs]
        rows = pair_rows(pairs)
        table = reference.table(rows) if needs_reference else None
        heldout_ref = reference.cached(pair_rows(heldout)) if needs_reference and heldout else None
        reference.release()
        steps = c.total_steps(len(pairs))
        engine = ctx.train_engine(c.engine, checkpoint=checkpoint, optimizer=c.optimizer, total_steps=steps)
        ctx.log_metrics({"pairs": len(pairs), "steps": steps, "heldout_pairs": len(heldout)})

        def make_step(step: int) -> dict[str, Any]:
            chosen = step_indices(len(pairs), ctx.seed, step, c.batch_size)
            indices = [2 * i + side for i in chosen for side in (0, 1)]
            batch_rows: list[Row] = [rows[i] for i in indices]
            extras = {"ref_logps": reference.lookup(table, indices, batch_rows)} if needs_reference else {}
            return batch_of(batch_rows, **extras)

        callbacks: list[Any] = [CollapseMonitor(c.monitor)] if c.monitor else []
        evaluator = HeldoutPairs(heldout, heldout_ref, loss, c.eval_every) if heldout else None
        if evaluator:
            callbacks.append(evaluator)

        def before(trainer: Any) -> None:
            if evaluator and trainer.start_step() == 0:
                ctx.log_metrics(evaluator.evaluate(engine), step=0)

        summary = {"stage": "dpo", "loss": c.loss.name, "reference": c.reference}
        return train_and_export(ctx, engine, c, make_step, loss, steps, callbacks, summary, before=before,
                                rows_per_example=2)
