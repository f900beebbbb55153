"""Learning-rate schedules as plain functions of the step: warmup, then cosine, constant or WSD."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleName = Literal["cosine", "constant", "wsd"]


@dataclass(frozen=True)
class Schedule:
    """``lr(step)`` for step 0, 1, ... ``total_steps - 1``. Stateless: the step is the state.

    - cosine: linear warmup, then cosine decay to ``min_lr_ratio * peak_lr`` at the last step.
    - constant: linear warmup, then the peak.
    - wsd (warmup-stable-decay): warmup, the peak, then a linear decay over the last
      ``decay_fraction`` of the steps to ``min_lr_ratio * peak_lr``.
    """

    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    kind: ScheduleName = "cosine"
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        floor = self.peak_lr * self.min_lr_ratio
        last = max(self.total_steps - 1, 1)
        if self.kind == "constant":
            return self.peak_lr
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup_steps) / max(last - self.warmup_steps, 1))
            return floor + (self.peak_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        decay_start = max(self.warmup_steps, round(self.total_steps * (1 - self.decay_fraction)))
        if step < decay_start:
            return self.peak_lr
        progress = min(1.0, (step - decay_start) / max(last - decay_start, 1))
        return self.peak_lr + (floor - self.peak_lr) * progress
