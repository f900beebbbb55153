"""Core's built-in training loss. torch is imported inside, so core stays torch-free to import."""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import Field

from llm_core.config import Config

IGNORE_INDEX = -100


class CrossEntropyConfig(Config):
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


def cross_entropy(logits: Any, labels: Any, *, label_smoothing: float = 0.0) -> Any:
    """Mean next-token cross-entropy over positions whose label is not ``IGNORE_INDEX`` (-100).

    ``logits`` is (batch, seq, vocab) and ``labels`` (batch, seq), already aligned: labels[t] is the
    token that should follow position t. Masked positions (prompt tokens, padding) carry -100.
    """
    import torch.nn.functional as F

    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def make_cross_entropy(config: CrossEntropyConfig) -> Any:
    if config.label_smoothing:
        return partial(cross_entropy, label_smoothing=config.label_smoothing)
    return cross_entropy
