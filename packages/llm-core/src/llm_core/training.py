"""The one training loop, for every engine and every stage that trains (pretrain, SFT, RL, DPO...).

It reads top to bottom: ask the stage for the step's batches, ``train_step`` each with the loss,
let the callbacks add metrics, log, show progress, checkpoint. A stage plugs in through one hook,
``make_step(step)``: supervised stages return one batch; RL and preference stages return a
``StepPlan`` (rollouts done, several optimizer steps, metrics measured while building them,
optionally a ``stop_early`` test that ends the step's optimizer steps early, as PPO's KL limit does).

Resumable: every ``checkpoint_every`` steps the engine saves its full training state into a new
folder ``<state_uri>/step-NNNNNN`` (``TrainEngine.save``, with the loop's own state: step,
callbacks, the first logged loss), then ``<state_uri>/latest.json`` is replaced atomically to
point at it (the commit) and older folders go. A kill at any moment leaves the last committed
state intact. Batches must be a pure function of the step, so a re-run after a kill repeats
exactly the steps since the last checkpoint; the metrics those steps had logged are dropped first,
so ``metrics.jsonl`` never holds a step twice. Once the loop completes, the resume state is removed
unless ``keep_state`` (it can be larger than the model: AdamW keeps two moments per weight).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_core.artifacts import exists, join, read_json, remove_tree, write_json
from llm_core.engines import Batch, LossFn, TrainEngine
from llm_core.progress import TrainingProgress

log = logging.getLogger("llmt")
LOOP_STATE = "loop"  # key of the loop's own state inside the engine's extra_state
LATEST = "latest.json"  # the commit marker: which step folder holds the last complete state


class Callback(Protocol):
    """A named training callback. ``on_step`` may add metrics; its state is saved with the run."""

    name: str

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class StatelessCallback:
    """Base of a callback with nothing to save with the run: a subclass sets ``name`` and defines
    ``on_step``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class MetricsLog(Protocol):
    """Where the loop logs (a stage's ``metrics.jsonl``)."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None: ...

    def drop_metrics_from(self, step: int) -> None: ...


@dataclass
class StepPlan:
    """One loop step of an RL or preference stage: its optimizer steps' batches, in order, and
    what building them measured (rewards, rollout speed...). No batches: nothing to learn (the
    step still counts and logs)."""

    batches: Sequence[Batch]
    metrics: dict[str, float] = field(default_factory=dict)
    # Called with each optimizer step's metrics; True skips the plan's remaining batches (PPO's
    # early stop on KL). The step then also logs ``optimizer_steps``, how many batches it trained on.
    stop_early: Callable[[dict[str, float]], bool] | None = None


@dataclass
class Trainer:
    engine: TrainEngine
    make_step: Callable[[int], Batch | StepPlan]  # pure function of the step
    loss_fn: LossFn
    steps: int
    micro_batch_size: int | None = None
    metrics_log: MetricsLog | None = None
    log_every: int = 10
    checkpoint_every: int = 50
    state_uri: str | None = None  # a folder: the engine's training state plus the loop's
    keep_state: bool = False
    callbacks: Sequence[Callback] = ()
    name: str = "train"  # shown in progress lines
    headline: str = "loss"  # the metric progress shows beside the step
    history: list[dict[str, Any]] = field(default_factory=list)
    first_logged: dict[str, Any] | None = None
    _start: int | None = None

    def start_step(self) -> int:
        """The step this run starts from: 0, or where a previous attempt's saved state left off
        (loaded into the engine on the first call)."""
        if self._start is None:
            self._start = self.resume()
        return self._start

    def run(self) -> list[dict[str, Any]]:
        step = self.start_step()
        with TrainingProgress(self.name, self.steps, start=step, every=self.log_every,
                              headline=self.headline, enabled=self.engine.is_main) as progress:
            while step < self.steps:
                metrics = self.run_step(step)
                step += 1
                progress.update(step, metrics)
                if self.state_uri and (step % self.checkpoint_every == 0 or step == self.steps):
                    self.save_state(step)
        if self.state_uri and not self.keep_state and self.engine.is_main and exists(self.state_uri):
            remove_tree(self.state_uri)  # the stage's checkpoint is what it keeps
        return self.history

    def run_step(self, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        plan = self.make_step(step)
        if not isinstance(plan, StepPlan):
            plan = StepPlan([plan])
        metrics: dict[str, Any] = dict(plan.metrics)
        parts = []
        for batch in plan.batches:
            parts.append(self.engine.train_step(batch, self.loss_fn, self.micro_batch_size))
            if plan.stop_early is not None and plan.stop_early(parts[-1]):
                break
        metrics.update(_mean(parts))
        if plan.stop_early is not None:
            metrics["optimizer_steps"] = len(parts)
        metrics["step_time_s"] = time.perf_counter() - started
        for callback in self.callbacks:
            callback.on_step(step, metrics, self.engine)
        done = step + 1  # records are indexed by completed steps: "after step 1", ...
        self.history.append({"step": done, **metrics})
        if step % self.log_every == 0 or done == self.steps:
            rounded = {k: _round(v) for k, v in metrics.items()}
            if self.first_logged is None:
                self.first_logged = {"step": done, **rounded}
            if self.metrics_log is not None and self.engine.is_main:
                self.metrics_log.log_metrics(rounded, step=done)
        return metrics

    # --- resumable state ------------------------------------------------------------------------

    def save_state(self, step: int) -> None:
        """Every process calls the engine's save (a sharded engine writes its shards; the engine
        returns when the state is complete); the main process then commits it."""
        loop = {"step": step, "first_logged": self.first_logged,
                "callbacks": {c.name: c.state_dict() for c in self.callbacks}}
        folder = f"step-{step:06d}"
        self.engine.save(join(self.state_uri, folder), extra_state={LOOP_STATE: loop})
        if not self.engine.is_main:
            return
        previous = self._latest()
        write_json(join(self.state_uri, LATEST), {"step": step, "folder": folder})
        if previous and previous != folder:
            remove_tree(join(self.state_uri, previous))

    def _latest(self) -> str | None:
        marker = join(self.state_uri, LATEST)
        return read_json(marker)["folder"] if exists(marker) else None

    def resume(self) -> int:
        """Continue from ``state_uri`` when a previous attempt left one; returns the next step."""
        folder = self._latest() if self.state_uri else None
        if folder is None:
            return 0
        extra = self.engine.load(join(self.state_uri, folder))
        loop = extra.get(LOOP_STATE, {})
        for callback in self.callbacks:
            if callback.name in loop.get("callbacks", {}):
                callback.load_state_dict(loop["callbacks"][callback.name])
        step = int(loop.get("step", 0))
        self.first_logged = loop.get("first_logged")
        if self.metrics_log is not None and self.engine.is_main:
            self.metrics_log.drop_metrics_from(step + 1)  # what the killed attempt logged after the state
        log.info("%s: resumed at step %d of %d from %s", self.name, step, self.steps, self.state_uri)
        return step

    def summary(self) -> dict[str, Any]:
        """Headline numbers of the whole run (also right after a resume): first and final loss."""
        out: dict[str, Any] = {}
        if self.history and self.headline in self.history[-1]:
            out[f"final_{self.headline}"] = _round(self.history[-1][self.headline])
        if self.first_logged and self.headline in self.first_logged:
            out[f"first_{self.headline}"] = self.first_logged[self.headline]  # as logged
        out["steps"] = self.steps
        return out


def _mean(parts: list[dict[str, float]]) -> dict[str, float]:
    """Metrics averaged over the step's optimizer steps (``tokens`` summed)."""
    if not parts:
        return {}
    keys = {k for part in parts for k in part}
    return {k: (sum(p.get(k, 0) for p in parts) if k == "tokens"
                else sum(p[k] for p in parts if k in p) / sum(k in p for p in parts)) for k in keys}


def _round(value: Any, digits: int = 7) -> Any:
    """Logged floats to ``digits`` significant digits (a log-prob gap of 7e-8 stays visible)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))
    return value


def epoch_order(count: int, seed: int, step: int, batch_size: int) -> list[int]:
    """Example indices of optimizer step ``step``'s batch over ``count`` examples: each epoch a
    seeded permutation (numpy's ``default_rng([seed, epoch])``), batches wrap across epochs; a
    resumed run draws the same batches."""
    out = []
    for index in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(index, count)
        out.append(int(_permutation(count, seed, epoch)[offset]))
    return out


@functools.lru_cache(maxsize=4)
def _permutation(count: int, seed: int, epoch: int) -> Any:
    import numpy as np  # here, not at import: llm_core stays free of numpy on the CLI path

    return np.random.default_rng([seed, epoch]).permutation(count)
