"""The training loop, top to bottom: batch, forward, loss from the registry, backward, step, callbacks.

Resumable: every ``checkpoint_every`` steps the loop writes one file with the weights, AdamW state,
step (which is also the data position: batches are a pure function of the step), RNG state and
the callbacks' state. Re-running the same loop after a kill continues from it and reproduces the
uninterrupted run's losses exactly (fp32 on CPU).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import fsspec
import torch

from llm_core.artifacts import atomic_open, exists
from llm_torch.engine import TorchEngine

log = logging.getLogger("llmt")


class Callback(Protocol):
    """A named training callback. ``on_step`` may add metrics; its state is saved with the run."""

    name: str

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass
class Trainer:
    engine: TorchEngine
    batch_for_step: Callable[[int], Mapping[str, Any]]  # this rank's rows of the step's global batch
    loss_fn: Callable[..., Any]
    steps: int
    micro_batch_size: int | None = None
    log_metrics: Callable[[dict[str, Any], int], None] = lambda metrics, step: None
    log_every: int = 10
    checkpoint_every: int = 50
    state_uri: str | None = None  # one file holding everything needed to resume
    callbacks: Sequence[Callback] = ()
    history: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> list[dict[str, Any]]:
        self.resume()
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        while self.engine.step < self.steps:
            step = self.engine.step
            started = time.perf_counter()
            batch = self.batch_for_step(step)
            metrics = self.engine.train_step(batch, self.loss_fn, self.micro_batch_size)
            if distributed:  # report the global batch's loss, not this rank's share
                metrics = _mean_over_ranks(metrics)
            metrics["step_time_s"] = time.perf_counter() - started
            for callback in self.callbacks:
                callback.on_step(step, metrics)
            self.history.append({"step": step, **metrics})
            if step % self.log_every == 0 or step == self.steps - 1:
                self.log_metrics({k: _round(v) for k, v in metrics.items()}, step)
            if self.state_uri and (self.engine.step % self.checkpoint_every == 0 or self.engine.step == self.steps):
                self.save_state()
        return self.history

    # --- resumable state ------------------------------------------------------------------------

    def save_state(self) -> None:
        if _rank() != 0:
            return
        state = {**self.engine.training_state(),
                 "callbacks": {c.name: c.state_dict() for c in self.callbacks}}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        with atomic_open(self.state_uri, "wb") as handle:
            handle.write(buffer.getvalue())

    def resume(self) -> None:
        if not self.state_uri or not exists(self.state_uri):
            return
        with fsspec.open(self.state_uri, "rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), weights_only=False)
        self.engine.load_training_state(state)
        for callback in self.callbacks:
            if callback.name in state.get("callbacks", {}):
                callback.load_state_dict(state["callbacks"][callback.name])
        log.info("resumed training at step %d from %s", self.engine.step, self.state_uri)


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _mean_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    keys = sorted(k for k in metrics if k != "lr")
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(values)
    world = torch.distributed.get_world_size()
    out = {k: float(v) / (1 if k == "tokens" else world) for k, v in zip(keys, values.tolist(), strict=True)}
    return {**metrics, **out}


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


# --- built-in callbacks (registered in hooks.py) ------------------------------------------------


class LossEma:
    """Adds ``loss_ema``, an exponential moving average of the loss (a smoother curve to read)."""

    name = "loss_ema"

    def __init__(self, decay: float = 0.9):
        self.decay, self.value = decay, None

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
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

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.tokens_seen += int(metrics.get("tokens", 0))
        metrics["tokens_seen"] = self.tokens_seen
        metrics["tokens_per_s"] = metrics.get("tokens", 0) / max(metrics.get("step_time_s", 0), 1e-9)

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tokens_seen = int(state["tokens_seen"])
