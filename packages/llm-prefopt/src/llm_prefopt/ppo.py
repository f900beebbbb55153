"""PPO for RLHF, the pure parts: per-token rewards with a KL penalty, GAE, whitening, the loss, KL control.

Every tensor is (B, T) aligned with the engine's labels: position t holds the action ``labels[t]``
(the token after position t), its log-prob, and the value of the state it was taken from (the
value head's output at position t). ``mask`` is 1 on completion tokens. Conventions follow TRL's
PPO trainer (and "The N+ Implementation Details of RLHF with PPO", Huang et al. 2024):

* reward per token: ``-kl_coef * (logp_old - logp_ref)`` (the k1 estimate) on every completion token,
  plus the sequence's score on its last completion token (Ziegler et al. 2019, Eq. 2);
* ``whiten_rewards``: per-token rewards divided by their std over the batch's completion tokens
  (mean kept), TRL's ``masked_whiten(shift_mean=False)``;
* GAE (Schulman et al. 2016, Eq. 16) with ``gamma`` and ``lam`` over each completion, V = 0 after
  the last token; returns = advantages + values; advantages then whitened (mean 0, std 1) over the batch;
* loss = clipped policy loss + ``vf_coef`` * clipped value loss, each the **mean over the batch's
  completion tokens**: ``max(-A r, -A clip(r, 1 - eps, 1 + eps))`` with ``r = exp(logp - logp_old)``,
  and ``0.5 * max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from llm_core.config import Config
from llm_core.engines import TrainEngine


def masked_mean(x: Any, mask: Any) -> Any:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: Any, mask: Any, shift_mean: bool = True, eps: float = 1e-8) -> Any:
    """(x - mean) / std over the masked entries (the mean added back when ``shift_mean`` is False);
    the variance is unbiased, as TRL's."""
    mean = masked_mean(x, mask)
    count = mask.sum()
    var = masked_mean((x - mean) ** 2, mask) * (count / (count - 1).clamp(min=1.0))
    whitened = (x - mean) * (var + eps).rsqrt()
    return whitened if shift_mean else whitened + mean


def token_rewards(scores: Any, logprobs: Any, ref_logprobs: Any, mask: Any, kl_coef: float) -> tuple[Any, Any]:
    """Per-token rewards (KL penalty everywhere, the score on the last completion token) and the
    per-token k1 KL ``logp - logp_ref``."""
    import torch

    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * (mask > 0)).max(dim=1).values
    rewards[torch.arange(mask.shape[0]), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalized advantage estimates and returns over each row's masked (completion) positions;
    positions outside the mask are skipped (the next masked position follows directly)."""
    import torch

    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros_like(last_gae)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        gae_t = delta + gamma * lam * last_gae
        advantages[:, t] = gae_t * m
        last_gae = torch.where(m > 0, gae_t, last_gae)
        next_value = torch.where(m > 0, values[:, t], next_value)
    return advantages, (advantages + values) * mask


class PpoLossConfig(Config):
    clip_eps: float = Field(0.2, gt=0, lt=1, description="policy ratio clip (TRL's cliprange)")
    value_clip: float = Field(0.2, gt=0, description="value clip around the old values (cliprange_value)")
    vf_coef: float = Field(0.1, ge=0, description="weight of the value loss")


def ppo_loss(logprobs: Any, values: Any, mask: Any, old_logprobs: Any, old_values: Any, advantages: Any,
             returns: Any, clip_eps: float, value_clip: float, vf_coef: float) -> tuple[Any, dict[str, Any]]:
    """The clipped policy loss + vf_coef * the clipped value loss (see the module docstring)."""
    import torch

    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    pg_losses = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps))
    pg_loss = masked_mean(pg_losses, mask)
    values = values.float()
    clipped = torch.clamp(values, old_values - value_clip, old_values + value_clip)
    vf_losses = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    vf_loss = 0.5 * masked_mean(vf_losses, mask)
    with torch.no_grad():
        metrics = {"pg_loss": pg_loss.detach(), "vf_loss": vf_loss.detach(),
                   "clip_fraction": masked_mean(((ratio - 1.0).abs() > clip_eps).float(), mask),
                   "vf_clip_fraction": masked_mean(((clipped - returns) ** 2 > (values - returns) ** 2).float(), mask),
                   "approx_kl": masked_mean(0.5 * log_ratio ** 2, mask), "ratio_mean": masked_mean(ratio, mask),
                   "value_mean": masked_mean(values, mask)}
    return pg_loss + vf_coef * vf_loss, metrics


class PpoLoss:
    def __init__(self, config: PpoLossConfig):
        self.config = config

    def __call__(self, logprobs: Any, values: Any, mask: Any, old_logprobs: Any, old_values: Any, advantages: Any,
                 returns: Any) -> tuple[Any, dict[str, Any]]:
        if values is None:
            raise ValueError("the ppo loss needs a value head: build the policy with value_head=True")
        c = self.config
        return ppo_loss(logprobs, values, mask, old_logprobs, old_values, advantages, returns, c.clip_eps,
                        c.value_clip, c.vf_coef)


def make_ppo_loss(config: PpoLossConfig) -> PpoLoss:
    return PpoLoss(config)


# -- the KL penalty's coefficient ------------------------------------------------------------------


class KlControl(Config):
    """``fixed``: ``kl_coef`` throughout. ``adaptive`` (Ziegler et al. 2019, Sec. 2.2): after each
    step ``kl_coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * batch / horizon``, ``kl`` the rollouts'
    mean summed KL to the reference per sequence."""

    kind: Literal["fixed", "adaptive"] = "fixed"
    kl_coef: float = Field(0.05, ge=0, description="initial (or fixed) weight of the KL penalty in the reward")
    target: float = Field(6.0, gt=0, description="adaptive: target KL per sequence (nats)")
    horizon: int = Field(10000, ge=1, description="adaptive: sequences over which the error is corrected")


class KlController:
    """The KL coefficient as a training callback: updated from each step's ``kl`` metric, saved with the run."""

    name = "kl_controller"

    def __init__(self, config: KlControl, batch: int):
        self.config, self.batch = config, batch
        self.value = config.kl_coef

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        if self.config.kind == "adaptive" and "kl" in metrics and math.isfinite(metrics["kl"]):
            error = min(max(metrics["kl"] / self.config.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * self.batch / self.config.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = float(state["value"])
