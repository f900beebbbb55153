"""Training sequences for distillation: chats from disk, rows sampled by the student, padded batches.

A conversation record is ``{"messages": [{"role", "content"}, ...]}`` (the SFT format that
``teacher_generate`` writes), rendered with the student's pinned chat template
(``llm_core.chat.encode_conversation``): its ids, the mask of assistant tokens, and its prompt (the
ids before the first assistant token), which the student answers itself in on-policy steps.
Records that are malformed or longer than ``seq_len`` go to the rejects file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_core.chat import encode_conversation
from llm_core.data_io import RecordGate, RejectLog, load_records
from llm_core.engines import Tokenizer
from llm_core.types import Conversation


@dataclass(frozen=True)
class Example:
    ids: list[int]
    mask: list[int]  # 1 = a target token (the assistant's)

    @property
    def prompt(self) -> list[int]:
        return self.ids[:self.mask.index(1)]


def parse_example(record: dict[str, Any], tokenizer: Tokenizer, seq_len: int) -> Example:
    conversation = Conversation.from_dict(record)
    if not any(m.role == "assistant" for m in conversation.messages):
        raise ValueError("the conversation has no assistant turn: nothing to distill")
    ids, mask = encode_conversation(tokenizer, conversation.messages)
    if len(ids) > seq_len + 1:
        raise ValueError(f"the conversation has {len(ids)} tokens, more than seq_len + 1 = {seq_len + 1}; "
                         "raise seq_len or shorten the conversation")
    if 1 not in mask[1:]:
        raise ValueError("the assistant turn renders to no token")
    return Example(ids, mask)


def load_examples(uri: str, tokenizer: Tokenizer, seq_len: int, *, rejects_uri: str, stage: str,
                  max_rejects_fraction: float = 0.5, gate: RecordGate | None = None) -> list[Example]:
    """Every usable conversation of ``uri`` (less those the load-time ``gate`` drops); an input
    without any record is an error naming it."""
    rejects = RejectLog()
    try:
        return load_records(uri, lambda r: parse_example(r, tokenizer, seq_len), rejects_uri=rejects_uri,
                            what="conversations", max_rejects_fraction=max_rejects_fraction, rejects=rejects,
                            gate=gate)
    except ValueError:
        if len(rejects):
            raise
        raise ValueError(f"stage {stage!r}: the SFT set {uri} is empty (no conversation records); point "
                         "inputs.conversations at the JSONL that teacher_generate wrote, or let the teacher "
                         "solve more prompts (samples_per_prompt, max_prompts)") from None


def padded(rows: Sequence[Sequence[int]], masks: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """``input_ids``, ``attention_mask``, ``loss_mask`` as (B, W) tensors, right-padded to the longest row.

    Tensors rather than ragged lists: the teacher's (B, W, k) keys must keep the same width when
    the engine splits the batch into micro-batches."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        ids[i, :len(row)] = torch.as_tensor(list(row))
        attention[i, :len(row)] = 1
        loss_mask[i, :len(mask)] = torch.as_tensor(list(mask))
    return {"input_ids": ids, "attention_mask": attention, "loss_mask": loss_mask}


def target_positions(mask: Sequence[int]) -> list[int]:
    """Positions t whose label (the token at t + 1) is a target: where the loss looks at the teacher."""
    return [t for t in range(len(mask) - 1) if mask[t + 1]]
