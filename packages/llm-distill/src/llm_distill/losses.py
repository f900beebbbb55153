"""Distillation losses: pure functions of a student's logits and a teacher's next-token distribution.

At every target position t (``mask`` 1) the teacher's distribution P and the student's Q are
compared at temperature T: P_T = softmax(z_teacher / T), Q_T = softmax(z_student / T). The teacher
arrives as its top-k form, the extra batch keys ``teacher_top_logprobs`` and ``teacher_top_ids``
(B, T, k), the k largest raw log-probs at each position (``TrainEngine.top_logprobs``). Both
distributions are then taken over the same k + 1 buckets: the teacher's k tokens and one bucket for
the rest of the vocabulary, holding the teacher's remaining mass 1 - sum(top-k) and the student's
exact remaining mass. With k equal to the vocabulary there is no rest bucket and every divergence is
the exact one over the vocabulary. At T != 1 the teacher's rest is tempered as if spread evenly over
the V - k tokens it covers (the tokens themselves are not stored); at T = 1 nothing is assumed.

Divergences, per position (Agarwal et al. 2024, "On-Policy Distillation of Language Models", eq. 1):

* ``forward_kl``: KL(P || Q), mean-seeking (Hinton et al. 2015, soft labels);
* ``reverse_kl``: KL(Q || P), mode-seeking (MiniLLM);
* ``jsd``: beta KL(P || M) + (1 - beta) KL(Q || M) with M = beta P + (1 - beta) Q, TRL's
  convention (``GKDTrainer.generalized_jsd_loss``): beta = 0 is forward KL, beta = 1 reverse KL.

The loss is ``(1 - alpha) * T^2 * D + alpha * CE``: the T^2 of Hinton et al. keeps the soft
targets' gradients on the scale of the hard-label ones as T changes, and CE is the student's
cross-entropy on the labels at temperature 1. Metrics: ``kd`` (D), ``ce``, ``kl`` (KL(P || Q) at T,
token mean, whatever D is: the teacher-student KL the stages report) and ``teacher_topk_mass``.
Reduction over positions (the same for D and CE):

* ``token_mean``: the sum over every target token of the batch divided by their count (TRL's
  ``batchmean``; each token weighs the same, long answers weigh more);
* ``sequence_mean``: each sequence's mean over its tokens, then the mean over sequences;
* ``sequence_sum``: each sequence's sum over its tokens (the chain rule's sequence-level KL on the
  sampled prefixes), then the mean over sequences.

``minillm`` is MiniLLM's reverse-KL policy gradient (Gu et al. 2024, eq. 5-7), for student samples.
torch is imported inside the functions only.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from llm_core.config import Config

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
Reduction = Literal["token_mean", "sequence_mean", "sequence_sum"]
# The teacher's remaining mass is 1 - sum(top-k) in fp32 log-probs: below this it is rounding, not mass.
TAIL_FLOOR = 1e-7


class DistillLossConfig(Config):
    temperature: float = Field(1.0, gt=0, description="softmax temperature T of both distributions")
    alpha: float = Field(0.0, ge=0, le=1, description="weight of the hard-label cross-entropy; the "
                         "divergence gets 1 - alpha (times T^2)")
    reduction: Reduction = Field("token_mean", description="how positions are averaged (see the module)")


class JsdLossConfig(DistillLossConfig):
    beta: float = Field(0.5, ge=0, le=1, description="0: forward KL, 1: reverse KL, between: generalized JSD")


class MiniLlmConfig(Config):
    long_term_coef: float = Field(1.0, ge=0, description="weight of the policy-gradient (future reward) term")
    length_normalize: bool = Field(True, description="divide each future reward by the tokens it sums (eq. 7)")
    reduction: Reduction = "token_mean"


# --- the shared pieces ----------------------------------------------------------------------------


def teacher_tail(top_values: Any, rest_count: int, temperature: float) -> Any:
    """(B, T, 1) log of the teacher's remaining mass outside its top-k, at temperature T (unnormalized:
    the same scale as ``top_values / T``). Computed in fp64: 1 - sum is a small difference."""
    import torch

    covered = torch.logsumexp(top_values.double(), dim=-1, keepdim=True)
    rest = torch.log((-torch.expm1(covered)).clamp(min=TAIL_FLOOR))
    if temperature != 1.0:  # the rest spread evenly over its tokens: n * (rest / n)^(1/T)
        rest = math.log(rest_count) + (rest - math.log(rest_count)) / temperature
    return rest.to(top_values.dtype)


def bucket_logprobs(logits: Any, top_values: Any, top_ids: Any, temperature: float = 1.0) -> tuple[Any, Any]:
    """(teacher, student) log-probs over the same buckets at temperature T: the teacher's k tokens,
    plus the rest of the vocabulary as one bucket when k is below the vocabulary size."""
    import torch

    vocab, k = logits.shape[-1], top_ids.shape[-1]
    top_ids = top_ids.long()
    student = torch.log_softmax(logits.float() / temperature, dim=-1)
    student_top = student.gather(-1, top_ids)
    teacher_top = top_values.float() / temperature
    if k >= vocab:  # the whole vocabulary: exact, no rest bucket
        return torch.log_softmax(teacher_top, dim=-1), student_top
    student_rest = student.scatter(-1, top_ids, float("-inf")).logsumexp(-1, keepdim=True)
    teacher = torch.cat([teacher_top, teacher_tail(top_values.float(), vocab - k, temperature)], dim=-1)
    return torch.log_softmax(teacher, dim=-1), torch.cat([student_top, student_rest], dim=-1)


def kl(log_p: Any, log_q: Any) -> Any:
    """KL(P || Q) over the last dimension, from log-probs."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def divergence(teacher: Any, student: Any, kind: Divergence, beta: float = 0.5) -> Any:
    """Per-position divergence (B, T) between bucket log-probs of teacher P and student Q."""
    import torch

    if kind == "forward_kl" or (kind == "jsd" and beta == 0.0):
        return kl(teacher, student)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1.0):
        return kl(student, teacher)
    mixture = torch.logsumexp(torch.stack([teacher + math.log(beta), student + math.log1p(-beta)]), dim=0)
    return beta * kl(teacher, mixture) + (1 - beta) * kl(student, mixture)


def reduce(per_token: Any, mask: Any, reduction: Reduction) -> Any:
    """A scalar from per-position values (B, T) over the positions where ``mask`` is 1."""
    masked = per_token * mask
    if reduction == "token_mean":
        return masked.sum() / mask.sum().clamp(min=1.0)
    tokens = mask.sum(-1)
    per_row = masked.sum(-1) / (tokens.clamp(min=1.0) if reduction == "sequence_mean" else 1.0)
    rows = (tokens > 0).float()
    return (per_row * rows).sum() / rows.sum().clamp(min=1.0)


def covered_mass(top_values: Any, mask: Any) -> Any:
    """Mean share of the teacher's probability its top-k holds, over the target positions."""
    import torch

    return reduce(torch.logsumexp(top_values.float(), dim=-1).exp(), mask, "token_mean")


# --- the registered losses ------------------------------------------------------------------------


class DistillationLoss:
    """``(1 - alpha) * T^2 * D(P_T, Q_T) + alpha * CE``, D one of the divergences (module docstring)."""

    def __init__(self, config: DistillLossConfig, kind: Divergence):
        self.config, self.kind = config, kind

    def __call__(self, logits: Any, logprobs: Any, mask: Any, teacher_top_logprobs: Any,
                 teacher_top_ids: Any) -> tuple[Any, dict[str, Any]]:
        import torch

        c = self.config
        teacher, student = bucket_logprobs(logits, teacher_top_logprobs, teacher_top_ids, c.temperature)
        beta = getattr(c, "beta", 0.5)
        kd = reduce(divergence(teacher, student, self.kind, beta), mask, c.reduction)
        ce = reduce(-logprobs, mask, c.reduction)
        loss = (1 - c.alpha) * c.temperature ** 2 * kd + c.alpha * ce
        with torch.no_grad():
            metrics = {"kd": kd.detach(), "ce": ce.detach(), "kl": reduce(kl(teacher, student), mask, "token_mean"),
                       "teacher_topk_mass": covered_mass(teacher_top_logprobs, mask)}
        return loss, metrics


def forward_kl(config: DistillLossConfig) -> DistillationLoss:
    return DistillationLoss(config, "forward_kl")


def reverse_kl(config: DistillLossConfig) -> DistillationLoss:
    return DistillationLoss(config, "reverse_kl")


def jsd(config: JsdLossConfig) -> DistillationLoss:
    return DistillationLoss(config, "jsd")


class MiniLlmLoss:
    """MiniLLM (Gu et al. 2024): minimize the sequence-level reverse KL(Q || P) on student samples.

    Its gradient splits in two (eq. 5-6): the single-step part, the exact token-level reverse KL
    over the vocabulary at each position (differentiated through Q, no sampling noise); and the
    long-term part, a policy gradient ``-R_{t+1} * log q(y_t)`` whose reward is the future
    ``R_{t+1} = sum_{t' > t} log p(y_t') - log q(y_t')`` (detached), divided by the number of
    tokens it sums when ``length_normalize`` (eq. 7). log p of a sampled token not in the teacher's
    top-k is its even share of the remaining mass (exact when k is the vocabulary). Temperature 1.
    Both parts use ``reduction``. Metric ``reverse_kl_samples``: the Monte-Carlo estimate
    log q - log p per sampled token.
    """

    def __init__(self, config: MiniLlmConfig):
        self.config = config

    def __call__(self, logits: Any, logprobs: Any, labels: Any, mask: Any, teacher_top_logprobs: Any,
                 teacher_top_ids: Any) -> tuple[Any, dict[str, Any]]:
        import torch

        c = self.config
        teacher, student = bucket_logprobs(logits, teacher_top_logprobs, teacher_top_ids)
        single = reduce(kl(student, teacher), mask, c.reduction)
        with torch.no_grad():
            reward = (teacher_label_logprobs(teacher_top_logprobs, teacher_top_ids, labels, logits.shape[-1])
                      - logprobs) * mask
            future = reward.flip(-1).cumsum(-1).flip(-1) - reward  # sum over t' > t
            if c.length_normalize:
                future = future / (mask.flip(-1).cumsum(-1).flip(-1) - mask).clamp(min=1.0)
        long_term = reduce(-future * logprobs, mask, c.reduction)
        with torch.no_grad():
            metrics = {"single_step_kl": single.detach(), "kl": reduce(kl(teacher, student), mask, "token_mean"),
                       "reverse_kl_samples": reduce(-reward, mask, "token_mean")}
        return single + c.long_term_coef * long_term, metrics


def minillm(config: MiniLlmConfig) -> MiniLlmLoss:
    return MiniLlmLoss(config)


def teacher_label_logprobs(top_values: Any, top_ids: Any, labels: Any, vocab: int) -> Any:
    """(B, T) teacher log p(label) from its top-k; a label outside it gets an even share of the rest."""
    import torch

    hit = top_ids.long() == labels.clamp(min=0)[..., None]
    inside = (top_values.float() * hit).sum(-1)
    rest_count = vocab - top_ids.shape[-1]
    if rest_count <= 0:
        return inside
    outside = teacher_tail(top_values.float(), rest_count, 1.0)[..., 0] - math.log(rest_count)
    return torch.where(hit.any(-1), inside, outside)
