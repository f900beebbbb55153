"""The ``sft`` stage: supervised fine-tuning on chat JSONL with loss on assistant tokens only.

Input records are ``{"messages": [{"role": ..., "content": ...}, ...]}``, one per line. A record
with no assistant turn, an unknown role, bad JSON, or more tokens than ``seq_len`` goes to
``rejects.jsonl`` with its file, line and reason; the stage fails up front (before any training)
when more than ``max_rejects_fraction`` of the records are bad, never halfway through an epoch.
The chat template is pinned into the output checkpoint, so eval and serving render the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from llm_core.stage import StageContext
from llm_core.types import Conversation, Message, StageResult
from llm_torch.distributed import is_main, rank_and_world
from llm_torch.engine import TorchEngine
from llm_torch.stages import (
    RejectLog,
    engine_options,
    input_files,
    run_in_processes,
    set_threads,
    train,
)
from llm_torch.tokenizer import TextTokenizer


def encode_conversation(tokenizer: TextTokenizer, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a mask (1 = assistant token, trained on).

    The conversation is rendered one message at a time: an assistant turn's tokens are what the
    full rendering adds after the generation prompt ``render(messages[:i], add_generation_prompt)``,
    so training sees exactly the prompt that inference will render. A template for which a prompt
    is not a prefix of the conversation is an error.
    """
    pieces: list[tuple[str, int]] = []
    done = ""
    for i, message in enumerate(messages):
        if message.role == "assistant":
            prompt = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
            done = _extend(pieces, done, prompt, 0, i)
        full = tokenizer.apply_chat_template(messages[: i + 1])
        done = _extend(pieces, done, full, int(message.role == "assistant"), i)
    ids: list[int] = []
    mask: list[int] = []
    for text, trained in pieces:
        piece = tokenizer.encode(text)
        ids += piece
        mask += [trained] * len(piece)
    return ids, mask


def _extend(pieces: list[tuple[str, int]], done: str, rendered: str, trained: int, index: int) -> str:
    if not rendered.startswith(done):
        raise ValueError(f"chat template is not prefix-stable at messages[{index}]: the rendering of the "
                         "earlier messages is not a prefix of the rendering with this one")
    if len(rendered) > len(done):
        pieces.append((rendered[len(done):], trained))
    return rendered


@dataclass(frozen=True)
class Example:
    ids: list[int]
    mask: list[int]


def load_examples(uri: str, tokenizer: TextTokenizer, seq_len: int, rejects: RejectLog) -> tuple[list[Example], int]:
    """Encode every conversation of the input; bad ones go to ``rejects``. Returns (examples, total)."""
    examples, total = [], 0
    for file in input_files(uri):
        with fsspec.open(file, "rb", compression="infer") as handle:
            for line_no, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                total += 1
                try:
                    examples.append(_example(raw, tokenizer, seq_len))
                except (UnicodeDecodeError, ValueError, TypeError) as exc:
                    rejects({"source": file, "line": line_no, "error": str(exc),
                             "raw": raw.decode("utf-8", "backslashreplace").rstrip("\n")[:2000]})
    return examples, total


def _example(raw: bytes, tokenizer: TextTokenizer, seq_len: int) -> Example:
    record = json.loads(raw.decode("utf-8"))
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object with 'messages', got {type(record).__name__}")
    conversation = Conversation.from_dict(record)
    if not any(m.role == "assistant" for m in conversation.messages):
        raise ValueError("the conversation has no assistant turn: nothing to train on")
    ids, mask = encode_conversation(tokenizer, conversation.messages)
    if len(ids) > seq_len + 1:
        raise ValueError(f"the conversation has {len(ids)} tokens, more than seq_len + 1 = {seq_len + 1}; "
                         "raise seq_len or shorten the conversation")
    return Example(ids, mask)


class SftStage:
    def __init__(self, **options: Any):
        self.options = options

    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        set_threads(o["threads"])
        checkpoint = ctx.input("checkpoint")
        tokenizer = pinned_tokenizer(TextTokenizer.load(checkpoint), o["chat_template"], checkpoint)
        rejects = RejectLog()
        examples, total = load_examples(ctx.input("conversations"), tokenizer, o["seq_len"], rejects)
        bad = len(rejects.records)
        if is_main():
            rejects.write(ctx.path("rejects.jsonl"))
            ctx.log_metrics({"conversations": total, "rejected": bad})
        if not examples or bad > o["max_rejects_fraction"] * total:
            first = rejects.records[0] if rejects.records else {}
            raise ValueError(f"sft: {bad} of {total} conversations are invalid (see {ctx.path('rejects.jsonl')}); "
                             f"first: {first.get('source')}:{first.get('line')}: {first.get('error')}")
        if o["processes"] > 1:
            return run_in_processes(ctx, o)
        engine = TorchEngine(checkpoint, tokenizer=tokenizer, seed=ctx.seed, **engine_options(o, o["lr"]))
        rank, world = rank_and_world()
        steps_per_epoch = math.ceil(len(examples) / o["batch_size"])
        options = dict(o)
        if o["epochs"]:
            options["steps"] = o["epochs"] * steps_per_epoch
            engine.schedule = dataclasses.replace(engine.schedule, total_steps=options["steps"])

        def batch_for_step(step: int) -> dict[str, Any]:
            order = epoch_order(len(examples), ctx.seed, step, o["batch_size"])[rank::world]
            rows = [examples[i] for i in order]
            return {"input_ids": [r.ids for r in rows], "loss_mask": [r.mask for r in rows]}

        summary = {"stage": "sft", "peak_lr": o["lr"], "chat_template": engine.tokenizer.template_name}
        return train(ctx, engine, batch_for_step, options, summary)


def epoch_order(count: int, seed: int, step: int, batch_size: int) -> list[int]:
    """Example indices of a step's batch: each epoch a seeded permutation, batches wrap epochs."""
    out = []
    for index in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(index, count)
        out.append(int(_permutation(count, seed, epoch)[offset]))
    return out


@functools.lru_cache(maxsize=4)
def _permutation(count: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(count)


def pinned_tokenizer(tokenizer: TextTokenizer, choice: str, checkpoint: str) -> TextTokenizer:
    """The tokenizer with the chat template the stage trains with and pins into its output."""
    if choice == "checkpoint":
        return tokenizer if tokenizer.chat_template else tokenizer.with_chat_template("chatml")
    return tokenizer.with_chat_template(choice)
