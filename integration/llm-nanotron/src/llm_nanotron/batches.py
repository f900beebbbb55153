"""Batches as the engine contract defines them (``llm_core.engines``), turned into tensors, and the
arguments a loss asks for by name. The same conventions as the embedded engine's ``prepare``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

IGNORE_INDEX = -100
ENGINE_KEYS = ("input_ids", "attention_mask", "labels", "loss_mask")  # every other key goes to the loss
LOSS_INPUTS = ("logits", "labels", "logprobs", "mask")


def prepare(batch: Mapping[str, Any], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` right-padded, ``labels`` aligned (``labels[:, t]`` is predicted at t, -100 ignored),
    and the loss's extra keys as tensors (per row or per token)."""
    ids = batch["input_ids"]
    if torch.is_tensor(ids):
        ids = ids.long()
        attention = torch.as_tensor(batch.get("attention_mask", torch.ones_like(ids))).long()
    else:
        ids, attention = right_pad(ids, pad_id)
    out = {"input_ids": ids}
    if batch.get("labels") is not None:
        out["labels"] = as_tensor(batch["labels"], ids.shape, IGNORE_INDEX).long()
    else:
        targets = torch.full_like(ids, IGNORE_INDEX)
        targets[:, :-1] = ids[:, 1:]
        keep = torch.zeros_like(ids, dtype=torch.bool)
        keep[:, :-1] = attention[:, 1:].bool()
        if batch.get("loss_mask") is not None:
            keep[:, :-1] &= as_tensor(batch["loss_mask"], ids.shape, 0).bool()[:, 1:]
        out["labels"] = targets.masked_fill(~keep, IGNORE_INDEX)
    for key, value in batch.items():
        if key not in ENGINE_KEYS:
            out[key] = as_tensor(value, ids.shape, 0.0)
    return out


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def as_tensor(value: Any, shape: tuple[int, ...], fill: float) -> torch.Tensor:
    """A tensor from a tensor, a list of numbers, or ragged rows (right-padded with ``fill``)."""
    if torch.is_tensor(value):
        return value
    dtype = torch.float32 if isinstance(fill, float) else torch.long
    if len(value) and isinstance(value[0], list | tuple):
        out = torch.full(shape, fill, dtype=dtype)
        for i, row in enumerate(value):
            out[i, :len(row)] = torch.as_tensor(list(row), dtype=dtype)
        return out
    return torch.as_tensor(value, dtype=dtype if isinstance(fill, float) else None)


def rows_of(value: Any, rows: slice) -> Any:
    return value[rows] if value is not None else None


def loss_arguments(loss_fn: Callable[..., Any], available: Sequence[str]) -> list[str]:
    """The names among ``available`` that ``loss_fn`` takes (all of them for ``**kwargs``); a
    required argument the batch cannot provide is an error naming it."""
    params = inspect.signature(loss_fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return list(available)
    names = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                  inspect.Parameter.KEYWORD_ONLY)]
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in available]
    if missing:
        hint = " (the nanotron engine has no value head)" if "values" in missing else ""
        raise TypeError(f"loss function needs {missing}, which the batch does not provide{hint}; batch "
                        f"extras: {sorted(k for k in available if k not in LOSS_INPUTS)}")
    return [n for n in names if n in available]
