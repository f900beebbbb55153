"""Preference data: records -> validated pairs -> token rows, with malformed records kept in rejects.

A pair record (JSONL, Parquet or a saved HF dataset, read by ``llm_core.data_io.load_records``) is
TRL's format: ``{"prompt", "chosen", "rejected"}`` where ``prompt`` is a string (one user turn) or a
list of ``{role, content}`` messages, and ``chosen`` / ``rejected`` are strings or a list holding
one assistant message; optional ``id`` and ``margin`` (a float, for reward models). An unpaired
record (KTO) is ``{"prompt", "completion", "label": true | false}``.

Rejected, each with its file, line and reason: a missing or mistyped field, an empty completion,
chosen identical to rejected, and a pair longer than ``max_length`` tokens once rendered.

Rows are rendered with the checkpoint's chat template by ``llm_core.chat.encode_conversation``: the
prompt (system prompt, user turn, generation prompt) is unmasked context and the assistant turn,
its end-of-turn token included, is the completion the losses score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from llm_core.artifacts import fingerprint
from llm_core.chat import encode_conversation
from llm_core.data_io import RecordGate, RejectLog, load_records
from llm_core.engines import Tokenizer
from llm_core.types import Message, PreferencePair


@dataclass(frozen=True)
class Row:
    """One sequence: prompt + completion token ids, and which of them are the completion (1)."""

    ids: tuple[int, ...]
    mask: tuple[int, ...]


@dataclass(frozen=True)
class EncodedPair:
    id: str
    prompt: tuple[Message, ...]
    chosen_text: str
    rejected_text: str
    chosen: Row
    rejected: Row
    margin: float | None = None


@dataclass(frozen=True)
class EncodedCompletion:
    """One unpaired completion (KTO): desirable or not."""

    id: str
    prompt: tuple[Message, ...]
    text: str
    row: Row
    desirable: bool


def prompt_messages(value: Any, system_prompt: str = "") -> list[Message]:
    """A record's prompt as messages: a string is one user turn (after the system prompt, if any)."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("field 'prompt' is empty")
        messages = [Message("user", value)]
    elif isinstance(value, list) and value:
        messages = []
        for i, m in enumerate(value):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in (
                    "system", "user", "assistant", "tool"):
                raise ValueError(f"prompt[{i}] must be an object with a role and a string content")
            messages.append(Message(m["role"], m["content"]))
    else:
        raise TypeError("field 'prompt' must be a string or a non-empty list of {role, content} messages")
    if system_prompt and messages[0].role != "system":
        messages.insert(0, Message("system", system_prompt))
    return messages


def completion_text(record: dict[str, Any], field: str) -> str:
    """A completion field: a string, or a list holding one assistant message (TRL's conversational form)."""
    if field not in record:
        raise KeyError(f"missing field {field!r}")
    value = record[field]
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0].get("content")
    if not isinstance(value, str):
        raise TypeError(f"field {field!r} must be a string (or one assistant message)")
    if not value.strip():
        raise ValueError(f"field {field!r} is an empty completion")
    return value


def parse_pair(record: dict[str, Any], system_prompt: str = "") -> PreferencePair:
    """A validated ``PreferencePair``; raises naming the bad field."""
    if "prompt" not in record:
        raise KeyError("missing field 'prompt'")
    prompt = prompt_messages(record["prompt"], system_prompt)
    chosen, rejected = completion_text(record, "chosen"), completion_text(record, "rejected")
    if chosen.strip() == rejected.strip():
        raise ValueError("chosen and rejected are identical: the pair says nothing")
    metadata = {}
    if record.get("margin") is not None:
        if not isinstance(record["margin"], int | float):
            raise TypeError("field 'margin' must be a number")
        metadata["margin"] = float(record["margin"])
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, id=str(record.get("id", "")),
                          metadata=metadata)


def encode_row(tokenizer: Tokenizer, prompt: list[Message], completion: str, max_length: int) -> Row:
    ids, mask = encode_conversation(tokenizer, [*prompt, Message("assistant", completion)])
    if len(ids) > max_length:
        raise ValueError(f"the rendered sequence has {len(ids)} tokens, more than max_length = {max_length}; "
                         "raise max_length or shorten the record")
    return Row(tuple(ids), tuple(mask))


def encode_pair(pair: PreferencePair, tokenizer: Tokenizer, max_length: int) -> EncodedPair:
    return EncodedPair(pair.id, tuple(pair.prompt), pair.chosen, pair.rejected,
                       encode_row(tokenizer, pair.prompt, pair.chosen, max_length),
                       encode_row(tokenizer, pair.prompt, pair.rejected, max_length), pair.metadata.get("margin"))


def load_pairs(uri: str, tokenizer: Tokenizer, *, rejects_uri: str, max_length: int, system_prompt: str = "",
               max_rejects_fraction: float = 0.5, split: str | None = None,
               rejects: RejectLog | None = None, gate: RecordGate | None = None) -> list[EncodedPair]:
    """Every valid pair of an input, encoded; malformed ones go to ``rejects_uri``, those the load-time
    ``gate`` flags are dropped (or refused). Pairs without an id are named by their position."""
    pairs = load_records(uri, lambda r: encode_pair(parse_pair(r, system_prompt), tokenizer, max_length),
                         rejects_uri=rejects_uri, what="preference pairs", split=split,
                         max_rejects_fraction=max_rejects_fraction, rejects=rejects, gate=gate)
    return [p if p.id else dataclasses.replace(p, id=f"pair-{i}") for i, p in enumerate(pairs)]


def parse_completion(record: dict[str, Any], tokenizer: Tokenizer, max_length: int,
                     system_prompt: str = "") -> EncodedCompletion:
    """An unpaired (KTO) record ``{prompt, completion, label}``."""
    if "prompt" not in record:
        raise KeyError("missing field 'prompt'")
    if not isinstance(record.get("label"), bool):
        raise TypeError("field 'label' must be true (desirable) or false (undesirable)")
    prompt = prompt_messages(record["prompt"], system_prompt)
    text = completion_text(record, "completion")
    return EncodedCompletion(str(record.get("id", "")), tuple(prompt), text,
                             encode_row(tokenizer, prompt, text, max_length), record["label"])


def load_completions(uri: str, tokenizer: Tokenizer, *, rejects_uri: str, max_length: int,
                     system_prompt: str = "", max_rejects_fraction: float = 0.5,
                     gate: RecordGate | None = None) -> list[EncodedCompletion]:
    """KTO data: unpaired records, or pair records, each pair giving one desirable and one
    undesirable completion (told apart by their fields)."""

    def parse(record: dict[str, Any]) -> list[EncodedCompletion]:
        if "completion" in record or "label" in record:
            return [parse_completion(record, tokenizer, max_length, system_prompt)]
        pair = encode_pair(parse_pair(record, system_prompt), tokenizer, max_length)
        return [EncodedCompletion(pair.id, pair.prompt, pair.chosen_text, pair.chosen, True),
                EncodedCompletion(pair.id, pair.prompt, pair.rejected_text, pair.rejected, False)]

    groups = load_records(uri, parse, rejects_uri=rejects_uri, what="KTO records",
                          max_rejects_fraction=max_rejects_fraction, gate=gate)
    out = []
    for i, group in enumerate(groups):
        for j, c in enumerate(group):
            out.append(c if c.id else dataclasses.replace(c, id=f"example-{i}-{j}"))
    return out


def pair_rows(pairs: list[EncodedPair]) -> list[Row]:
    """Rows of the pairs, interleaved: chosen of pair i at 2i, rejected at 2i + 1 (see ``losses``)."""
    return [row for p in pairs for row in (p.chosen, p.rejected)]


def rows_fingerprint(rows: list[Row]) -> str:
    """Identity of a data set's token rows (ids and masks): the reference cache's data key."""
    return fingerprint([[list(r.ids), list(r.mask)] for r in rows])


def batch_of(rows: list[Row], **extras: list[Any]) -> dict[str, Any]:
    """An engine batch of rows (ragged; the engine pads) plus per-row extras (``ref_logps``...)."""
    return {"input_ids": [list(r.ids) for r in rows], "loss_mask": [list(r.mask) for r in rows], **extras}


def label_mask(rows: list[Row]) -> list[list[float]]:
    """The mask aligned with labels (``labels[t]`` is token t + 1): the one a loss receives as ``mask``."""
    return [[float(m) for m in r.mask[1:]] + [0.0] for r in rows]
