"""Batches as the engine contract defines them (``llm_core.engines``) turned into tensors, and the
arguments a loss asks for by name: the conventions every torch-based engine here shares (the
embedded engine and the nanotron engine).

``labels[:, t]`` is the token predicted at position t, ``IGNORE_INDEX`` where none counts; keys
other than ``ENGINE_KEYS`` are the loss's own inputs, per row (B,) or per token (B, T).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

IGNORE_INDEX = -100
ENGINE_KEYS = ("input_ids", "attention_mask", "labels", "loss_mask")  # every other key goes to the loss


def prepare_batch(batch: Mapping[str, Any], pad_id: int) -> dict[str, torch.Tensor]:
    """CPU tensors: ``input_ids`` right-padded with ``pad_id``, its ``attention_mask``, ``labels``
    aligned (given, or the next tokens where both are attended and ``loss_mask`` allows), and the
    loss's extra keys."""
    ids = batch["input_ids"]
    if torch.is_tensor(ids):
        ids = ids.long()
        attention = torch.as_tensor(batch.get("attention_mask", torch.ones_like(ids))).long()
    else:
        ids, attention = right_pad(ids, pad_id)
    out = {"input_ids": ids, "attention_mask": attention}
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


def accepted_names(fn: Callable[..., Any], available: Sequence[str] | Mapping[str, Any],
                   why_missing: Mapping[str, str] | None = None) -> list[str]:
    """The names among ``available`` that the loss ``fn`` takes (all of them for ``**kwargs``); a
    required argument the batch cannot provide is an error naming it (with the engine's reason from
    ``why_missing``, where it gives one)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return list(available)
    names = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                  inspect.Parameter.KEYWORD_ONLY)]
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in available]
    if missing:
        reasons = "".join(f" ({why_missing[n]})" for n in missing if why_missing and n in why_missing)
        raise TypeError(f"loss function needs {missing}, which the batch does not provide{reasons}; batch "
                        f"extras: {sorted(k for k in available if k not in ('logits', 'labels'))}")
    return [n for n in names if n in available]


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def as_tensor(value: Any, shape: tuple[int, ...] | None, fill: float) -> torch.Tensor:
    """A tensor from a tensor, a number list, or ragged rows (right-padded with ``fill``)."""
    if torch.is_tensor(value):
        return value
    dtype = torch.float32 if isinstance(fill, float) else torch.long
    if shape is not None and len(value) and isinstance(value[0], list | tuple):
        out = torch.full(shape, fill, dtype=dtype)
        for i, row in enumerate(value):
            out[i, :len(row)] = torch.as_tensor(list(row), dtype=dtype)
        return out
    return torch.as_tensor(value, dtype=dtype if isinstance(fill, float) else None)


def rows_of(value: Any, rows: slice) -> Any:
    """Rows ``rows`` of a batch value (a tensor or a list); None stays None."""
    return value[rows] if value is not None else None
