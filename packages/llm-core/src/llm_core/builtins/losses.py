"""Core's built-in training loss. torch is imported inside, so core stays torch-free to import."""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import Field

from llm_core.config import Config

IGNORE_INDEX = -100


class CrossEntropyConfig(Config):
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


def cross_entropy(logprobs: Any, mask: Any) -> Any:
    """Mean next-token cross-entropy over the positions whose label is not ``IGNORE_INDEX`` (-100).

    ``logprobs`` (batch, seq) holds log p(labels[t] | prefix), ``mask`` 1.0 where a label counts
    (prompt tokens and padding carry -100 and 0.0): the loss is -sum(logprobs * mask) / sum(mask),
    a mean over the micro-batch's scored tokens (0 when it has none). It names ``logprobs``, not
    ``logits``, so an engine may compute them without the (batch, seq, vocab) logits (the embedded
    engine does, ``llm_torch.logprobs``); the value equals ``F.cross_entropy`` on the logits.
    """
    return -(logprobs * mask).sum() / mask.sum().clamp(min=1.0)


def smoothed_cross_entropy(logits: Any, labels: Any, *, label_smoothing: float) -> Any:
    """``cross_entropy`` with label smoothing, which needs every logit (``F.cross_entropy``'s
    convention: the target is (1 - eps) onehot + eps / vocab)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def make_cross_entropy(config: CrossEntropyConfig) -> Any:
    if config.label_smoothing:
        return partial(smoothed_cross_entropy, label_smoothing=config.label_smoothing)
    return cross_entropy
