"""The ``kto`` stage: KTO on unpaired desirable / undesirable completions (or pairs split in two).

The examples are shuffled once (seeded) and cut into fixed blocks of ``batch_size``; each step
trains on one block (blocks in a seeded order per epoch; a last partial block is left out). Fixed
blocks let the mismatched KL rows be fixed too, as in TRL: row j of a block pairs its prompt with
the completion of row j - 1 (rotated), so the reference log-probs of both the matched and the KL
rows are cached once (``llm_prefopt.reference``); the policy's KL log-probs come from a no-grad
pass at the start of each step. See ``llm_prefopt.kto`` for the loss's conventions.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from pydantic import Field

from llm_core.refs import LossRef
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import StageResult
from llm_prefopt.kto import KtoConfig, check_class_balance
from llm_prefopt.options import PrefTraining, step_indices, train_and_export
from llm_prefopt.pairs import EncodedCompletion, Row, batch_of, encode_row, load_completions
from llm_prefopt.reference import ReferenceLogps, ReferenceMode, summed_logps

log = logging.getLogger("llmt.prefopt")


class KtoStageConfig(PrefTraining):
    loss: LossRef = Field(default_factory=lambda: LossRef(name="kto"))
    reference: ReferenceMode = Field("cached", description="cached once per data set, or a live frozen model")


def kl_rows(block: list[EncodedCompletion], tokenizer: Any, max_length: int) -> list[Row]:
    """Mismatched rows of a block: prompt j with completion j - 1 (TRL's rotation by one)."""
    return [encode_row(tokenizer, list(c.prompt), block[j - 1].text, 2 * max_length) for j, c in enumerate(block)]


class KtoStage:
    def __init__(self, config: KtoStageConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        c = self.config
        if c.batch_size < 2:
            raise ValueError("kto needs batch_size >= 2: the KL reference point pairs each prompt with another "
                             "row's completion")
        checkpoint = ctx.input("checkpoint")
        reference = ReferenceLogps(ctx, c.engine, ctx.inputs.get("reference", checkpoint), c.reference)
        tokenizer = reference.engine.tokenizer
        examples = load_completions(ctx.input("examples"), tokenizer, rejects_uri=ctx.path("rejects.jsonl"),
                                    max_length=c.max_length, system_prompt=c.prompt.system_prompt,
                                    max_rejects_fraction=c.max_rejects_fraction,
                                    gate=ctx.record_gate(c.decontaminate))
        order = list(range(len(examples)))
        random.Random(ctx.seed).shuffle(order)
        blocks = [[examples[i] for i in order[s:s + c.batch_size]]
                  for s in range(0, len(order) - c.batch_size + 1, c.batch_size)]
        if not blocks:
            raise ValueError(f"kto: {len(examples)} examples make no batch of {c.batch_size}; lower batch_size")
        matched = [e.row for block in blocks for e in block]
        mismatched = [r for block in blocks for r in kl_rows(block, tokenizer, c.max_length)]
        desirable = sum(e.desirable for block in blocks for e in block)
        loss = c.loss.build(ctx.registries)
        if isinstance(getattr(loss, "config", None), KtoConfig):
            warning = check_class_balance(desirable, len(matched) - desirable, loss.config)
            if warning:
                log.warning(warning)
        table = reference.table(matched + mismatched)
        reference.release()
        steps = c.epochs * len(blocks) if c.epochs else c.steps
        engine = ctx.train_engine(c.engine, checkpoint=checkpoint, optimizer=c.optimizer, total_steps=steps)
        ctx.log_metrics({"examples": len(examples), "desirable": desirable, "blocks": len(blocks),
                         "left_out": len(examples) - len(matched), "steps": steps})
        size = c.batch_size

        def make_step(step: int) -> dict[str, Any]:
            b = step_indices(len(blocks), ctx.seed, step, 1)[0]
            rows = matched[b * size:(b + 1) * size]
            kl = mismatched[b * size:(b + 1) * size]
            ref = reference.lookup(table, range(b * size, (b + 1) * size), rows)
            ref_kl = reference.lookup(table, range(len(matched) + b * size, len(matched) + (b + 1) * size), kl)
            return batch_of(rows, desirable=[float(e.desirable) for e in blocks[b]], ref_logps=ref,
                            kl_logps=summed_logps(engine, kl), ref_kl_logps=ref_kl)

        summary = {"stage": "kto", "loss": c.loss.name, "reference": c.reference}
        return train_and_export(ctx, engine, c, make_step, loss, steps, [], summary)
