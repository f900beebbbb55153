"""Domain mixtures and curricula: static weights, temperature sampling, replay, phased schedules.

A mixture maps domain -> weight (summing to 1). A curriculum is a list of phases, each a mixture
used until a token count; ``wsd_curriculum`` aligns a late anneal (more high-quality, math and
code data) with the decay phase of a warmup-stable-decay learning-rate schedule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


def normalize(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights scaled to sum to 1; negative or all-zero weights are an error."""
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"mixture weights must be >= 0, got {dict(weights)}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"mixture weights must not all be zero, got {dict(weights)}")
    return {domain: w / total for domain, w in weights.items()}


def temperature_weights(sizes: Mapping[str, float], temperature: float) -> dict[str, float]:
    """p_i proportional to size_i ** (1 / T): T = 1 is proportional, large T tends to uniform."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return normalize({d: (s ** (1.0 / temperature) if s > 0 else 0.0) for d, s in sizes.items()})


def with_replay(new: Mapping[str, float], replay: Mapping[str, float], ratio: float) -> dict[str, float]:
    """Continual pretraining: a ``ratio`` share of tokens replays the old mixture, the rest is new."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"replay ratio must be in [0, 1], got {ratio}")
    new, replay = normalize(new), normalize(replay)
    domains = dict.fromkeys([*new, *replay])
    return {d: (1 - ratio) * new.get(d, 0.0) + ratio * replay.get(d, 0.0) for d in domains}


@dataclass(frozen=True)
class Phase:
    """A mixture in force until ``until_tokens`` tokens have been trained on in all."""

    until_tokens: int
    weights: dict[str, float]


def mixture_at(phases: list[Phase], tokens: int) -> dict[str, float]:
    """The mixture in force after ``tokens`` tokens (the last phase continues past its end)."""
    for phase in phases:
        if tokens < phase.until_tokens:
            return phase.weights
    return phases[-1].weights


def wsd_lr_multiplier(tokens: int, total_tokens: int, warmup_fraction: float, decay_fraction: float,
                      final_multiplier: float = 0.0) -> float:
    """Warmup-stable-decay: linear warmup, flat, then a linear decay over the last fraction."""
    warmup = total_tokens * warmup_fraction
    decay_start = total_tokens * (1 - decay_fraction)
    if tokens < warmup:
        return tokens / warmup
    if tokens < decay_start or decay_fraction == 0:
        return 1.0
    progress = min(1.0, (tokens - decay_start) / (total_tokens - decay_start))
    return 1.0 - (1.0 - final_multiplier) * progress


def wsd_curriculum(total_tokens: int, decay_fraction: float, stable: Mapping[str, float],
                   anneal: Mapping[str, float]) -> list[Phase]:
    """Two phases: the stable mixture, then the anneal mixture exactly over the LR decay."""
    if not 0 < decay_fraction < 1:
        raise ValueError(f"decay_fraction must be in (0, 1), got {decay_fraction}")
    decay_start = math.floor(total_tokens * (1 - decay_fraction))
    return [Phase(decay_start, normalize(stable)), Phase(total_tokens, normalize(anneal))]


def cap_epochs(weights: Mapping[str, float], sizes: Mapping[str, float], total: float,
               max_epochs: float) -> dict[str, float]:
    """Lower the weight of domains that would repeat more than ``max_epochs`` times, and give the
    freed share to the others in proportion; an error when every domain together is too small."""
    if total > max_epochs * sum(sizes.get(d, 0) for d, w in weights.items() if w > 0):
        raise ValueError(f"{total} tokens need more than {max_epochs} epochs of the weighted domains "
                         f"({dict(sizes)}); lower total_tokens or raise max_epochs")
    capped: dict[str, float] = {}
    free = dict(normalize(weights))
    while True:
        room = 1.0 - sum(capped.values())
        scale = room / sum(free.values())
        over = {d for d, w in free.items() if w * scale * total > max_epochs * sizes.get(d, 0)}
        if not over:
            return {**capped, **{d: w * scale for d, w in free.items()}}
        for d in over:
            capped[d] = max_epochs * sizes.get(d, 0) / total
            del free[d]


def phase_budgets(phases: list[Phase]) -> list[dict[str, int]]:
    """Tokens each phase takes from each domain."""
    budgets, start = [], 0
    for phase in phases:
        length = phase.until_tokens - start
        if length <= 0:
            raise ValueError(f"phases must end at increasing token counts; got {phase.until_tokens} after {start}")
        budgets.append({d: round(length * w) for d, w in phase.weights.items()})
        start = phase.until_tokens
    return budgets
