"""Batches for the nanotron engine: the embedded engine's conventions (``llm_torch.batches``), less
the attention mask (nanotron's training attention takes right-padded rows whole, and every key it
is handed beyond ids and labels goes to the loss)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from llm_torch.batches import IGNORE_INDEX, accepted_names, as_tensor, prepare_batch, right_pad, rows_of

__all__ = ["IGNORE_INDEX", "LOSS_INPUTS", "as_tensor", "loss_arguments", "prepare", "right_pad", "rows_of"]

LOSS_INPUTS = ("logits", "labels", "logprobs", "mask")


def prepare(batch: Mapping[str, Any], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` right-padded, ``labels`` aligned (``labels[:, t]`` is predicted at t, -100 ignored),
    and the loss's extra keys as tensors (per row or per token)."""
    tensors = prepare_batch(batch, pad_id)
    del tensors["attention_mask"]
    return tensors


def loss_arguments(loss_fn: Callable[..., Any], available: Sequence[str]) -> list[str]:
    """The names among ``available`` that ``loss_fn`` takes; a required one the batch lacks is an error."""
    return accepted_names(loss_fn, available, {"values": "the nanotron engine has no value head"})
