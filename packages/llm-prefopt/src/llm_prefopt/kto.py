"""KTO (Ethayarajh et al. 2024): unpaired desirable / undesirable completions, a batch KL reference point.

A KTO batch has one row per completion (no pairing): ``logprobs`` and ``mask`` as the engine gives
them, and per-row extras ``desirable`` (1 or 0), ``ref_logps`` (the reference's summed completion
log-prob), ``kl_logps`` / ``ref_kl_logps`` (policy and reference summed log-probs of a *mismatched*
completion: row i's prompt with the completion of the row before it in the same batch, rotated
as TRL does). Conventions, as TRL 1.16's ``KTOTrainer(loss_type="kto")``:

* ``r = log pi(y|x) - log pi_ref(y|x)`` of summed completion log-probs;
* the reference point ``z0 = max(0, mean over the batch of (kl_logps - ref_kl_logps))``, detached
  (the policy's mismatched log-probs come from a no-grad pass at the step's weights);
* desirable rows lose ``lambda_D * (1 - sigmoid(beta (r - z0)))``, undesirable rows
  ``lambda_U * (1 - sigmoid(beta (z0 - r)))`` (the paper's Eq. 7-8 without the constant ``lambda_y``
  offset), and the loss is the **mean over all rows** of the batch;
* implicit rewards are ``beta * r``; ``rewards/margins`` is mean desirable minus mean undesirable.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from llm_core.config import Config

log = logging.getLogger("llmt.prefopt")


class KtoConfig(Config):
    beta: float = Field(0.1, gt=0, description="scale of the log-ratio inside the sigmoid")
    desirable_weight: float = Field(1.0, gt=0, description="lambda_D, the weight of desirable rows")
    undesirable_weight: float = Field(1.0, gt=0, description="lambda_U, the weight of undesirable rows")


def kto_losses(logratios: Any, desirable: Any, reference_point: Any, beta: float, desirable_weight: float,
               undesirable_weight: float) -> Any:
    """Per-row KTO losses (see the module docstring); ``desirable`` is a bool tensor."""
    import torch

    desirable_loss = desirable_weight * (1.0 - torch.sigmoid(beta * (logratios - reference_point)))
    undesirable_loss = undesirable_weight * (1.0 - torch.sigmoid(beta * (reference_point - logratios)))
    return torch.where(desirable, desirable_loss, undesirable_loss)


def reference_point(kl_logps: Any, ref_kl_logps: Any) -> Any:
    """KTO's z0: the batch estimate of KL(pi || pi_ref) from mismatched pairs, clamped at 0, no gradient."""
    return (kl_logps - ref_kl_logps).mean().detach().clamp(min=0.0)


class KtoLoss:
    """The registered ``kto`` loss."""

    needs_reference = True

    def __init__(self, config: KtoConfig):
        self.config = config

    def __call__(self, logprobs: Any, mask: Any, desirable: Any, ref_logps: Any, kl_logps: Any,
                 ref_kl_logps: Any) -> tuple[Any, dict[str, Any]]:
        import torch

        c = self.config
        mask = mask.to(logprobs.dtype)
        logps = (logprobs * mask).sum(-1)
        logratios = logps - ref_logps.to(logps.dtype)
        good = desirable > 0.5
        z0 = reference_point(kl_logps.to(logps.dtype), ref_kl_logps.to(logps.dtype))
        loss = kto_losses(logratios, good, z0, c.beta, c.desirable_weight, c.undesirable_weight).mean()
        metrics: dict[str, Any] = {"kl": z0}
        with torch.no_grad():
            rewards = c.beta * logratios.detach()
            if good.any():
                metrics["rewards/chosen"] = rewards[good].mean()
                metrics["logps/chosen"] = logps[good].detach().mean()
            if (~good).any():
                metrics["rewards/rejected"] = rewards[~good].mean()
                metrics["logps/rejected"] = logps[~good].detach().mean()
            if good.any() and (~good).any():
                metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        return loss, metrics


def make_kto(config: KtoConfig) -> KtoLoss:
    return KtoLoss(config)


def check_class_balance(desirable: int, undesirable: int, config: KtoConfig) -> str | None:
    """The paper's advice (Sec. 4.2, as TRL warns): lambda_D n_D / (lambda_U n_U) in [1, 4/3].
    Returns the warning to log, or None."""
    if not desirable or not undesirable:
        return (f"KTO data has {desirable} desirable and {undesirable} undesirable completions; it needs both")
    ratio = config.desirable_weight * desirable / (config.undesirable_weight * undesirable)
    if 1.0 <= ratio <= 4.0 / 3.0:
        return None
    low = undesirable * config.undesirable_weight / desirable
    return (f"KTO class balance: lambda_D * n_D / (lambda_U * n_U) = {ratio:.2f} with {desirable} desirable and "
            f"{undesirable} undesirable rows; the paper recommends [1, 4/3]: set desirable_weight in "
            f"[{low:.2f}, {low * 4 / 3:.2f}]")
