"""The DPO family: pairwise preference losses, pure functions over tensors, registered by name.

**How a pair reaches the loss.** A preference batch interleaves its rows: row ``2i`` is pair ``i``'s
prompt + chosen completion, row ``2i + 1`` the same prompt + rejected completion (so any even
micro-batch keeps its pairs whole). The engine hands the loss ``logprobs`` (B, T: log p of each
label, 0 where ignored) and ``mask`` (B, T: 1 on completion tokens) and, for the losses with a
reference model, ``ref_logps`` (B,): the reference's log-probability of each row's completion,
summed over its tokens (computed once per data set, see ``llm_prefopt.reference``). The loss sums
the policy's token log-probs itself: ``log pi(y|x) = sum_t logprobs[t] * mask[t]``.

**Conventions** (the same as TRL 1.16 unless a line says otherwise; checked against TRL in the tests):

* sequence log-probs are **sums** over completion tokens; IPO, SimPO and ORPO use the **mean** over
  the completion's tokens (the length-normalized log-prob), as TRL does;
* each loss is computed per pair and **averaged over the pairs** of the (micro-)batch;
* ``beta`` multiplies the log-ratio difference inside the sigmoid / hinge (DPO, robust, hinge),
  is IPO's regularization tau (target margin ``1 / (2 beta)``), SimPO's reward scale, and ORPO's
  lambda (the weight of the odds-ratio term beside the NLL);
* implicit rewards (metrics) are ``beta * (log pi - log pi_ref)`` of the summed log-probs for the
  reference-based losses, ``beta * mean-token log pi`` for SimPO and ORPO;
* ``sft_weight`` (RPO, Pang et al. 2024, "Iterative Reasoning Preference Optimization", Eq. 2) adds
  ``sft_weight * NLL(chosen)`` to any of them, the NLL being the mean over every chosen completion
  token of the batch (TRL's ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, alpha]``);
* ORPO's own NLL term is the same chosen-completion NLL (the paper's Eq. 2); TRL's ``ORPOTrainer``
  also counts the prompt's tokens in it, the one place these losses differ from TRL on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from llm_core.builtins.losses import cross_entropy
from llm_core.config import Config

PairLossKind = Literal["dpo", "ipo", "hinge", "robust", "simpo", "orpo"]
REFERENCE_FREE = ("simpo", "orpo")


# -- the losses, per pair, over sequence-level quantities ------------------------------------------


def dpo_sigmoid(chosen_logratios: Any, rejected_logratios: Any, beta: float) -> Any:
    """DPO (Rafailov et al. 2023, Eq. 7): ``-log sigmoid(beta * (lr_c - lr_r))`` per pair, where
    ``lr = log pi(y|x) - log pi_ref(y|x)`` of summed token log-probs."""
    import torch.nn.functional as F

    return -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))


def ipo(chosen_avg_logratios: Any, rejected_avg_logratios: Any, beta: float) -> Any:
    """IPO (Azar et al. 2023, Eq. 17, tau = beta): ``(d - 1 / (2 beta))^2`` with ``d`` the difference
    of **length-normalized** log-ratios (each summed log-ratio divided by its completion's token
    count), the normalization TRL uses and the IPO authors confirmed to it."""
    return (chosen_avg_logratios - rejected_avg_logratios - 1.0 / (2.0 * beta)) ** 2


def hinge(chosen_logratios: Any, rejected_logratios: Any, beta: float) -> Any:
    """SLiC-HF hinge (Zhao et al. 2023, Eq. 2 with a reference): ``relu(1 - beta * (lr_c - lr_r))``."""
    import torch

    return torch.relu(1.0 - beta * (chosen_logratios - rejected_logratios))


def robust(chosen_logratios: Any, rejected_logratios: Any, beta: float, label_smoothing: float) -> Any:
    """Robust DPO (Chowdhury et al. 2024, Eq. 8): unbiased under preference labels flipped with
    probability ``label_smoothing`` (eps < 0.5): ``((1 - eps) l(d) - eps l(-d)) / (1 - 2 eps)`` with
    ``l(d) = -log sigmoid(beta d)``. eps = 0 is DPO."""
    import torch.nn.functional as F

    z = beta * (chosen_logratios - rejected_logratios)
    clean = -(1.0 - label_smoothing) * F.logsigmoid(z)
    flipped = -label_smoothing * F.logsigmoid(-z)
    return (clean - flipped) / (1.0 - 2.0 * label_smoothing)


def simpo(chosen_avg_logps: Any, rejected_avg_logps: Any, beta: float, gamma: float) -> Any:
    """SimPO (Meng et al. 2024, Eq. 6): reference-free, ``-log sigmoid(beta * (a_c - a_r) - gamma)``
    with ``a`` the mean token log-prob of the completion and ``gamma`` the target reward margin
    (TRL's ``CPOTrainer(loss_type="simpo")``: ``simpo_gamma`` is this gamma)."""
    import torch.nn.functional as F

    return -F.logsigmoid(beta * (chosen_avg_logps - rejected_avg_logps) - gamma)


def log1mexp(x: Any) -> Any:
    """``log(1 - exp(x))`` for x < 0, stable on both sides of -ln 2 (Maechler 2012)."""
    import torch

    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_log_odds(chosen_avg_logps: Any, rejected_avg_logps: Any) -> Any:
    """ORPO's log odds ratio (Hong et al. 2024, Eq. 4-7): ``log(odds(y_c) / odds(y_r))`` with
    ``odds(y) = p / (1 - p)`` and ``p = exp(mean token log-prob)``."""
    return (chosen_avg_logps - rejected_avg_logps) - (log1mexp(chosen_avg_logps) - log1mexp(rejected_avg_logps))


def orpo_odds_ratio(chosen_avg_logps: Any, rejected_avg_logps: Any, beta: float) -> Any:
    """ORPO's odds-ratio term per pair, ``beta * log sigmoid(log odds ratio)`` (to be maximized;
    TRL's ``ORPOTrainer.odds_ratio_loss`` returns the same ``losses``). ORPO's loss is
    ``NLL(chosen) - mean(this)``."""
    import torch.nn.functional as F

    return beta * F.logsigmoid(orpo_log_odds(chosen_avg_logps, rejected_avg_logps))


def chosen_nll(logprobs: Any, mask: Any) -> Any:
    """Negative log-likelihood of the chosen rows (even rows), the mean over all their completion
    tokens (TRL's ``sft`` loss type, and ORPO's NLL term)."""
    return cross_entropy(logprobs[0::2], mask[0::2])


# -- from engine tensors to pairs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pairs:
    """Per-pair sequence quantities of an interleaved batch (chosen = even rows, rejected = odd)."""

    chosen_logps: Any  # (P,) summed completion log-probs
    rejected_logps: Any
    chosen_tokens: Any  # (P,) completion lengths (float)
    rejected_tokens: Any

    @classmethod
    def from_rows(cls, logprobs: Any, mask: Any) -> Pairs:
        rows = logprobs.shape[0]
        if rows % 2:
            raise ValueError(f"a preference batch interleaves chosen / rejected rows, so it has an even number "
                             f"of rows; got {rows} (is micro_batch_size odd?)")
        mask = mask.to(logprobs.dtype)
        sums = (logprobs * mask).sum(-1)
        tokens = mask.sum(-1).clamp(min=1.0)
        return cls(sums[0::2], sums[1::2], tokens[0::2], tokens[1::2])

    def avg_logps(self) -> tuple[Any, Any]:
        return self.chosen_logps / self.chosen_tokens, self.rejected_logps / self.rejected_tokens


class PairLossConfig(Config):
    """What every pairwise loss shares."""

    beta: float = Field(0.1, gt=0, description="see the loss's docstring for where beta enters")
    sft_weight: float = Field(0.0, ge=0, description="RPO: weight of the chosen completions' NLL added to "
                              "the loss (0: off)")


class DpoConfig(PairLossConfig):
    pass


class IpoConfig(PairLossConfig):
    beta: float = Field(0.1, gt=0, description="IPO's tau: the target margin of length-normalized "
                        "log-ratios is 1 / (2 beta)")


class HingeConfig(PairLossConfig):
    pass


class RobustConfig(PairLossConfig):
    label_smoothing: float = Field(0.1, ge=0, lt=0.5, description="assumed probability that a preference "
                                   "label is flipped")


class SimpoConfig(PairLossConfig):
    beta: float = Field(2.0, gt=0, description="scale of the length-normalized reward")
    gamma: float = Field(1.0, ge=0, description="target reward margin (TRL's simpo_gamma)")


class OrpoConfig(PairLossConfig):
    beta: float = Field(0.1, gt=0, description="lambda: weight of the odds-ratio term beside the NLL")


class PairwiseLoss:
    """A registered pairwise loss: the ``kind`` formula with its config. ``needs_reference`` tells a
    stage whether to provide ``ref_logps``."""

    def __init__(self, config: PairLossConfig, kind: PairLossKind):
        self.config, self.kind = config, kind
        self.needs_reference = kind not in REFERENCE_FREE

    def __call__(self, logprobs: Any, mask: Any, ref_logps: Any = None) -> tuple[Any, dict[str, Any]]:
        import torch

        pairs = Pairs.from_rows(logprobs, mask)
        if self.needs_reference:
            if ref_logps is None:
                raise ValueError(f"loss {self.kind!r} needs 'ref_logps' (the reference's summed completion "
                                 "log-probs, one per row) in the batch")
            per_pair, chosen_rewards, rejected_rewards = self._with_reference(pairs, ref_logps.to(logprobs.dtype))
        else:
            per_pair, chosen_rewards, rejected_rewards = self._reference_free(pairs)
        loss = per_pair.mean()
        metrics: dict[str, Any] = {}
        if self.kind == "orpo":  # NLL - mean(beta * log sigmoid(log odds)), as TRL's ORPOTrainer
            nll = chosen_nll(logprobs, mask)
            metrics["nll_loss"] = nll.detach()
            loss = nll + loss
        if self.config.sft_weight > 0:
            sft = chosen_nll(logprobs, mask)
            metrics["sft_loss"] = sft.detach()
            loss = loss + self.config.sft_weight * sft
        with torch.no_grad():
            metrics.update(reward_metrics(chosen_rewards, rejected_rewards))
            metrics["logps/chosen"] = pairs.chosen_logps.mean()
            metrics["logps/rejected"] = pairs.rejected_logps.mean()
        return loss, metrics

    def _with_reference(self, pairs: Pairs, ref_logps: Any) -> tuple[Any, Any, Any]:
        c = self.config
        chosen_lr = pairs.chosen_logps - ref_logps[0::2]
        rejected_lr = pairs.rejected_logps - ref_logps[1::2]
        if self.kind == "dpo":
            per_pair = dpo_sigmoid(chosen_lr, rejected_lr, c.beta)
        elif self.kind == "ipo":
            per_pair = ipo(chosen_lr / pairs.chosen_tokens, rejected_lr / pairs.rejected_tokens, c.beta)
        elif self.kind == "hinge":
            per_pair = hinge(chosen_lr, rejected_lr, c.beta)
        else:
            per_pair = robust(chosen_lr, rejected_lr, c.beta, c.label_smoothing)
        return per_pair, c.beta * chosen_lr.detach(), c.beta * rejected_lr.detach()

    def _reference_free(self, pairs: Pairs) -> tuple[Any, Any, Any]:
        c = self.config
        chosen_avg, rejected_avg = pairs.avg_logps()
        if self.kind == "simpo":
            per_pair = simpo(chosen_avg, rejected_avg, c.beta, c.gamma)
        else:  # orpo: the odds-ratio term is maximized, so the per-pair loss is its negative
            per_pair = -orpo_odds_ratio(chosen_avg, rejected_avg, c.beta)
        return per_pair, c.beta * chosen_avg.detach(), c.beta * rejected_avg.detach()


def reward_metrics(chosen_rewards: Any, rejected_rewards: Any) -> dict[str, Any]:
    """TRL's names: mean chosen / rejected reward, accuracy (chosen > rejected) and mean margin."""
    return {"rewards/chosen": chosen_rewards.mean(), "rewards/rejected": rejected_rewards.mean(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean()}


def pair_loss_factory(kind: PairLossKind) -> Any:
    """The registry factory of one kind: ``factory(config) -> PairwiseLoss``."""

    def make(config: PairLossConfig) -> PairwiseLoss:
        return PairwiseLoss(config, kind)

    make.__name__ = f"make_{kind}"
    return make


PAIR_LOSSES: dict[str, tuple[type[PairLossConfig], str]] = {
    "dpo": (DpoConfig, "DPO sigmoid loss over summed log-ratios to the reference (Rafailov et al. 2023)"),
    "ipo": (IpoConfig, "IPO squared loss over length-normalized log-ratios (Azar et al. 2023)"),
    "hinge": (HingeConfig, "SLiC hinge loss over log-ratios to the reference (Zhao et al. 2023)"),
    "robust": (RobustConfig, "robust DPO under flipped labels, label_smoothing (Chowdhury et al. 2024)"),
    "simpo": (SimpoConfig, "SimPO: reference-free, length-normalized, target margin gamma (Meng et al. 2024)"),
    "orpo": (OrpoConfig, "ORPO: NLL + odds-ratio term, no reference model (Hong et al. 2024)"),
}
