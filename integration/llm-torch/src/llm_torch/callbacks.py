"""Built-in training callbacks (registered in ``hooks.py``); the loop itself is ``llm_core.training``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from llm_core.config import Config
from llm_core.engines import TrainEngine


class LossEmaConfig(Config):
    decay: float = Field(0.9, ge=0, lt=1, description="weight of the previous average")


class LossEma:
    """Adds ``loss_ema``, an exponential moving average of the loss (a smoother curve to read)."""

    name = "loss_ema"

    def __init__(self, config: LossEmaConfig):
        self.decay, self.value = config.decay, None

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        loss = metrics["loss"]
        self.value = loss if self.value is None else self.decay * self.value + (1 - self.decay) * loss
        metrics["loss_ema"] = self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = state["value"]


class Throughput:
    """Adds ``tokens_per_s`` of the step and ``tokens_seen`` so far (kept across a resume)."""

    name = "throughput"

    def __init__(self) -> None:
        self.tokens_seen = 0

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        self.tokens_seen += int(metrics.get("tokens", 0))
        metrics["tokens_seen"] = self.tokens_seen
        metrics["tokens_per_s"] = metrics.get("tokens", 0) / max(metrics.get("step_time_s", 0), 1e-9)

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tokens_seen = int(state["tokens_seen"])
