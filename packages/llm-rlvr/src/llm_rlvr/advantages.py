"""Advantage estimators: pure functions from a batch of outcome rewards to per-sample advantages.

Every estimator takes ``rewards`` of shape (num_prompts, group_size): row ``i`` holds the rewards
of the ``group_size`` completions sampled for prompt ``i``. It returns advantages of the same
shape; the policy loss broadcasts each sample's advantage to every token of its completion.
torch is imported lazily (callers pass tensors, so it is already loaded by then).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import Field

from llm_core.config import Config


def _check_groups(rewards: Any, minimum: int = 1) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (num_prompts, group_size), got shape {tuple(rewards.shape)}")
    if rewards.shape[1] < minimum:
        raise ValueError(f"this estimator needs groups of at least {minimum} samples, got {rewards.shape[1]}")


def _floating(rewards: Any) -> Any:
    """Integer or bool rewards become float32; floating rewards keep their dtype (float64 callers
    get float64 advantages: the formulas are exact in either precision)."""
    return rewards if rewards.is_floating_point() else rewards.float()


def grpo_advantages(rewards: Any, *, eps: float = 1e-6, normalize_std: bool = True) -> Any:
    """GRPO: each reward minus its group's mean, divided by the group's std (DeepSeekMath).

    A group whose rewards are all equal gets zero advantage (nothing to learn from it). The std is
    the unbiased sample std, as in the reference implementations.
    """
    _check_groups(rewards)
    rewards = _floating(rewards)
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centered
    std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else rewards.new_zeros(rewards.shape[0], 1)
    return centered / (std + eps)


def dr_grpo_advantages(rewards: Any) -> Any:
    """Dr. GRPO ("Understanding R1-Zero-like training"): group-mean baseline, no std division.

    Dividing by the group std up-weights prompts that are nearly always right or wrong; dropping it
    removes that difficulty bias. (The length bias is removed in the loss's aggregation.)
    """
    return grpo_advantages(rewards, normalize_std=False)


def rloo_advantages(rewards: Any) -> Any:
    """RLOO: each reward minus the mean of the *other* samples of its group (leave-one-out)."""
    _check_groups(rewards, minimum=2)
    rewards = _floating(rewards)
    k = rewards.shape[1]
    others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - others_mean


def reinforce_pp_advantages(rewards: Any, *, eps: float = 1e-6, group_baseline: bool = False) -> Any:
    """REINFORCE++: advantages normalized over the whole batch (mean 0, std 1), not per group.

    With ``group_baseline`` (REINFORCE++-baseline) the group mean is subtracted first, then the
    result is normalized by the global batch std.
    """
    _check_groups(rewards)
    rewards = _floating(rewards)
    if group_baseline:
        centered = rewards - rewards.mean(dim=1, keepdim=True)
    else:
        centered = rewards - rewards.mean()
    flat = centered.flatten()
    std = flat.std() if flat.numel() > 1 else flat.new_tensor(0.0)
    return centered / (std + eps)


# -- registry configs and factories ------------------------------------------------------------


class GrpoAdvantageConfig(Config):
    eps: float = Field(1e-6, gt=0, description="added to the group std before dividing")
    normalize_std: bool = Field(True, description="divide by the group std (False: Dr. GRPO)")


class ReinforcePPConfig(Config):
    eps: float = Field(1e-6, gt=0)
    group_baseline: bool = Field(False, description="subtract the group mean before global normalization")


def make_grpo(config: GrpoAdvantageConfig) -> Any:
    return partial(grpo_advantages, eps=config.eps, normalize_std=config.normalize_std)


def make_dr_grpo() -> Any:
    return dr_grpo_advantages


def make_rloo() -> Any:
    return rloo_advantages


def make_reinforce_pp(config: ReinforcePPConfig) -> Any:
    return partial(reinforce_pp_advantages, eps=config.eps, group_baseline=config.group_baseline)
