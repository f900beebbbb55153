"""The ``sft`` stage: supervised fine-tuning on chat JSONL with loss on assistant tokens only.

Input records are ``{"messages": [{"role": ..., "content": ...}, ...]}`` (JSONL, Parquet, or a
saved HF dataset). A record
with no assistant turn, an unknown role, bad JSON, or more tokens than ``seq_len`` goes to
``rejects.jsonl`` with its file, line and reason; the stage fails up front (before any training)
when more than ``max_rejects_fraction`` of the records are bad, never halfway through an epoch.
The chat template is pinned into the output checkpoint, so eval and serving render the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llm_core.chat import encode_conversation
from llm_core.data_io import RejectLog, load_records
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.training import epoch_order
from llm_core.types import Conversation, StageResult
from llm_torch.configs import SftConfig
from llm_torch.distributed import is_main, rank_and_world
from llm_torch.stages import context_parallel, run_in_processes, train
from llm_torch.tokenizer import TextTokenizer


@dataclass(frozen=True)
class Example:
    ids: list[int]
    mask: list[int]


def parse_example(record: dict[str, Any], tokenizer: TextTokenizer, seq_len: int) -> Example:
    """One training example from a ``{"messages": [...]}`` record; raises naming what is wrong."""
    conversation = Conversation.from_dict(record)
    if not any(m.role == "assistant" for m in conversation.messages):
        raise ValueError("the conversation has no assistant turn: nothing to train on")
    ids, mask = encode_conversation(tokenizer, conversation.messages)
    if len(ids) > seq_len + 1:
        raise ValueError(f"the conversation has {len(ids)} tokens, more than seq_len + 1 = {seq_len + 1}; "
                         "raise seq_len or shorten the conversation")
    return Example(ids, mask)


class SftStage:
    def __init__(self, config: SftConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        with limit_threads(c.threads):
            checkpoint = ctx.input("checkpoint")
            base = TextTokenizer.load(checkpoint)
            template = pinned_template(base, c.chat_template)
            tokenizer = base.with_chat_template(template)
            rejects = RejectLog()
            examples = load_records(ctx.input("conversations"), lambda r: parse_example(r, tokenizer, c.seq_len),
                                    rejects_uri=ctx.path("rejects.jsonl"), what="conversations",
                                    max_rejects_fraction=c.max_rejects_fraction, rejects=rejects,
                                    gate=ctx.record_gate(c.decontaminate))
            if c.processes > 1:
                return run_in_processes(ctx, c)
            steps = c.epochs * math.ceil(len(examples) / c.batch_size) if c.epochs else c.steps
            engine = ctx.train_engine(c.engine, checkpoint=checkpoint, chat_template=template,
                                      max_seq_len=c.seq_len, optimizer=c.optimizer, total_steps=steps,
                                      context_parallel=context_parallel(ctx, c))
            if is_main():
                ctx.log_metrics({"conversations": len(examples) + len(rejects), "rejected": len(rejects)})
            rank, world = (0, 1) if c.context_parallel is not None else rank_and_world()  # CP: all rows

            def batch_for_step(step: int) -> dict[str, Any]:
                order = epoch_order(len(examples), ctx.seed, step, c.batch_size)[rank::world]
                rows = [examples[i] for i in order]
                return {"input_ids": [r.ids for r in rows], "loss_mask": [r.mask for r in rows]}

            summary = {"stage": "sft", "peak_lr": c.optimizer.lr, "chat_template": engine.tokenizer.template_name}
            return train(ctx, engine, batch_for_step, c, summary, steps=steps)


def pinned_template(tokenizer: TextTokenizer, choice: str) -> str:
    """The chat template the stage trains with and pins into its output (name or Jinja source)."""
    if choice == "checkpoint":
        return tokenizer.template_name or tokenizer.chat_template or "chatml"
    return choice
