"""Policy-gradient losses: a PPO-style clipped surrogate with a k3 KL penalty, pure over tensors.

All tensors are (batch, completion_tokens) except ``advantages`` (batch,). ``mask`` is 1 for a
completion token the loss should see and 0 for padding. The function returns the scalar loss and
a dict of detached diagnostics (clip fraction, KL, ratio) that a trainer logs.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from pydantic import Field

from llm_core.config import Config

Aggregation = Literal["token_mean", "sequence_mean", "constant"]


def k3_kl(logprobs: Any, ref_logprobs: Any) -> Any:
    """Per-token k3 estimator of KL(policy || reference): exp(d) - d - 1 with d = ref - policy.

    Unbiased, always >= 0, and low-variance (Schulman, "Approximating KL divergence").
    """
    delta = ref_logprobs - logprobs
    return delta.exp() - delta - 1.0


def aggregate(per_token: Any, mask: Any, how: Aggregation, max_tokens: int | None = None) -> Any:
    """Reduce a (batch, tokens) loss to a scalar.

    ``token_mean`` averages over every unmasked token of the batch (DAPO); ``sequence_mean``
    averages each sequence over its own tokens, then over sequences (GRPO as published, which
    favours short correct answers and long wrong ones); ``constant`` sums tokens and divides by
    batch * ``max_tokens``, a fixed budget, so length carries no bias (Dr. GRPO).
    """
    mask = mask.to(per_token.dtype)
    if how == "token_mean":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if how == "sequence_mean":
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return per_seq.mean()
    if how == "constant":
        budget = max_tokens if max_tokens is not None else per_token.shape[1]
        return (per_token * mask).sum() / (per_token.shape[0] * budget)
    raise ValueError(f"unknown aggregation {how!r}; expected token_mean, sequence_mean or constant")


def clipped_policy_loss(
    logprobs: Any,
    old_logprobs: Any,
    advantages: Any,
    mask: Any,
    ref_logprobs: Any = None,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    kl_coef: float = 0.0,
    aggregation: Aggregation = "token_mean",
    max_tokens: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """GRPO / PPO clipped surrogate: -min(r A, clip(r, 1-lo, 1+hi) A) + kl_coef * k3, aggregated.

    ``r = exp(logprobs - old_logprobs)`` per token; the sequence's advantage is broadcast to all of
    its tokens. ``ref_logprobs`` is needed only when ``kl_coef > 0``.
    """
    import torch

    adv = advantages.to(logprobs.dtype).unsqueeze(1)
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    maskf = mask.to(logprobs.dtype)
    n_tokens = maskf.sum().clamp(min=1.0)
    metrics: dict[str, Any] = {}
    if kl_coef > 0.0:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs (log-probabilities of the reference model)")
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
        metrics["kl"] = ((kl * maskf).sum() / n_tokens).detach()
    elif ref_logprobs is not None:
        metrics["kl"] = ((k3_kl(logprobs, ref_logprobs) * maskf).sum() / n_tokens).detach()
    loss = aggregate(per_token, mask, aggregation, max_tokens)
    with torch.no_grad():
        was_clipped = (clipped < unclipped).to(logprobs.dtype)  # the min picked the clipped term
        metrics["clip_fraction"] = (was_clipped * maskf).sum() / n_tokens
        metrics["ratio_mean"] = (ratio * maskf).sum() / n_tokens
        metrics["approx_kl_old"] = ((ratio - 1.0 - log_ratio) * maskf).sum() / n_tokens
    return loss, metrics


# -- registry configs and factories ------------------------------------------------------------


class ClippedLossConfig(Config):
    clip_low: float = Field(0.2, ge=0.0, lt=1.0, description="ratio lower clip: 1 - clip_low")
    clip_high: float = Field(0.2, ge=0.0, description="ratio upper clip: 1 + clip_high (DAPO raises it)")
    kl_coef: float = Field(0.0, ge=0.0, description="weight of the k3 KL to the reference model")
    aggregation: Aggregation = Field("token_mean", description="how token losses become one scalar")
    max_tokens: int | None = Field(None, gt=0, description="constant aggregation's token budget "
                                   "(default: the padded completion length)")


class DrGrpoLossConfig(Config):
    clip_low: float = Field(0.2, ge=0.0, lt=1.0)
    clip_high: float = Field(0.2, ge=0.0)
    kl_coef: float = Field(0.0, ge=0.0)
    max_tokens: int | None = Field(None, gt=0, description="token budget (the generation limit)")


class PolicyLoss:
    """A registered policy loss: ``clipped_policy_loss`` with its options bound. ``kl_coef`` is
    public so that a stage knows whether the loss needs a reference model's log-probs."""

    def __init__(self, clip_low: float, clip_high: float, kl_coef: float, aggregation: Aggregation,
                 max_tokens: int | None):
        self.kl_coef = kl_coef
        self._loss = partial(clipped_policy_loss, clip_low=clip_low, clip_high=clip_high, kl_coef=kl_coef,
                             aggregation=aggregation, max_tokens=max_tokens)

    def __call__(self, logprobs: Any, old_logprobs: Any, advantages: Any, mask: Any,
                 ref_logprobs: Any = None) -> Any:
        return self._loss(logprobs, old_logprobs, advantages, mask, ref_logprobs=ref_logprobs)


def make_clipped_loss(config: ClippedLossConfig) -> PolicyLoss:
    return PolicyLoss(config.clip_low, config.clip_high, config.kl_coef, config.aggregation, config.max_tokens)


def make_dr_grpo_loss(config: DrGrpoLossConfig) -> PolicyLoss:
    """Dr. GRPO: the clipped loss summed over tokens and divided by a constant budget."""
    return PolicyLoss(config.clip_low, config.clip_high, config.kl_coef, "constant", config.max_tokens)
