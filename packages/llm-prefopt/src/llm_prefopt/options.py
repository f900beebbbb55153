"""What the preference training stages share: engine, optimizer, batch shape, data, the loop's options.

In a recipe each group is one table (``engine = {name = "torch"}``, ``optimizer = {lr = 1e-6}``); a
stage's own defaults live in small subclasses (``PrefOptimizer``). Batches are a pure function of
the step (seeded permutations of the examples, one per epoch), so a killed run resumes on the same
batches (``llm_core.training``).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from typing import Any

from pydantic import Field

from llm_core.config import Config
from llm_core.engines import TrainEngine
from llm_core.plots import plot_training_curves
from llm_core.refs import CallbackRef
from llm_core.specs import DecontaminateSpec, EngineSpec, OptimizerSpec, RolloutSpec, SamplingSpec, ScheduleName
from llm_core.stage import StageContext
from llm_core.training import Callback, Trainer
from llm_core.types import StageResult

CURVES = ("loss", "rewards/margins", "rewards/accuracies", "eval/rewards/margins", "reward_mean", "kl",
          "rewards/chosen", "rewards/rejected")


class PrefOptimizer(OptimizerSpec):
    lr: float = Field(1e-6, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleName = "constant"


class PromptOptions(Config):
    """How a record's prompt is rendered (the chat template comes with the checkpoint)."""

    system_prompt: str = Field("", description="a system turn put before every prompt that has none")


class LoopOptions(Config):
    """Options of every stage that trains through the one loop."""

    engine: EngineSpec = Field(default_factory=EngineSpec, description="the policy's training engine")
    optimizer: PrefOptimizer = Field(default_factory=PrefOptimizer)
    callbacks: list[CallbackRef] = Field(default_factory=list, description="registered training callbacks")
    micro_batch_size: int | None = Field(None, ge=1, description="examples per forward pass (default: all)")
    steps: int = Field(50, ge=1, description="optimizer steps (loop steps for ppo)")
    max_rejects_fraction: float = Field(0.5, ge=0, le=1, description="fail when more records are malformed")
    log_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(25, ge=1, description="steps between resumable training states")
    keep_resume_state: bool = Field(False, description="keep resume/ after the stage completes")
    threads: int | None = Field(None, ge=1, description="torch CPU threads")
    curves: bool = Field(True, description="draw curves.png when the stage ends")
    decontaminate: DecontaminateSpec | None = Field(None, description="a load-time gate on the training input "
                                                    "(pairs, examples, problems): a registered filter (e.g. "
                                                    "contamination) drops or refuses flagged records")


class PrefTraining(LoopOptions):
    """Options every offline preference stage shares (dpo, kto, reward_model)."""

    prompt: PromptOptions = Field(default_factory=PromptOptions)
    batch_size: int = Field(8, ge=1, description="examples (pairs, or completions for KTO) per optimizer step")
    epochs: int | None = Field(None, ge=1, description="passes over the data; overrides steps")
    max_length: int = Field(512, ge=8, description="tokens of prompt + completion; longer records are rejected")

    def total_steps(self, examples: int) -> int:
        return self.epochs * math.ceil(examples / self.batch_size) if self.epochs else self.steps


class GenerationOptions(Config):
    """How the stages that sample (``preference_pairs``, ``ppo``, ``ai_label``, ``cai_revise``) generate."""

    engine: RolloutSpec = Field(default_factory=RolloutSpec, description="the rollout engine that samples")
    sampling: SamplingSpec = Field(default_factory=lambda: SamplingSpec(max_new_tokens=64))
    prompt: PromptOptions = Field(default_factory=PromptOptions)
    chunk_prompts: int = Field(16, ge=1, description="prompts per generate call")
    threads: int | None = Field(None, ge=1, description="torch CPU threads")


def step_indices(count: int, seed: int, step: int, batch_size: int) -> list[int]:
    """Example indices of a step's batch: a seeded permutation per epoch, batches wrap epochs."""
    out = []
    for index in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(index, count)
        out.append(_permutation(count, seed, epoch)[offset])
    return out


@functools.lru_cache(maxsize=8)
def _permutation(count: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(count))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def train_and_export(ctx: StageContext, engine: TrainEngine, config: LoopOptions, make_step: Callable[[int], Any],
                     loss: Any, steps: int, callbacks: list[Callback], summary: dict[str, Any],
                     headline: str = "loss", before: Callable[[Trainer], None] | None = None,
                     rows_per_example: int = 1) -> StageResult:
    """The one training loop with the stage's options, then the checkpoint, curves and headline metrics.
    ``rows_per_example``: engine rows per example (2 for a pair), so micro-batches keep pairs whole."""
    callbacks = [*callbacks, *(ref.build(ctx.registries) for ref in config.callbacks)]
    trainer = Trainer(engine, make_step, loss, steps, micro_rows(config.micro_batch_size, rows_per_example),
                      metrics_log=ctx, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                      state_uri=ctx.path("resume"), keep_state=config.keep_resume_state, callbacks=callbacks,
                      name=ctx.name, headline=headline)
    if before is not None:
        before(trainer)
    trainer.run()
    result = trainer.summary()
    engine.export_hf(ctx.path("checkpoint"), {**summary, "result": result})
    if config.curves:
        plot_training_curves(ctx.store.read_metrics(ctx.name), ctx.path("curves.png"), title=ctx.name, keys=CURVES)
    last = trainer.history[-1] if trainer.history else {}
    metrics = {"steps": steps, **result, **{k: round(v, 5) for k, v in last.items()
                            if isinstance(v, float) and ("/" in k or k in ("kl", "reward_mean"))}}
    return StageResult(metrics=metrics, artifacts={"checkpoint": ctx.path("checkpoint")})


def micro_rows(micro_examples: int | None, rows_per_example: int) -> int | None:
    """Engine rows per micro-batch: a pair is two rows, so pairs stay whole."""
    return None if micro_examples is None else micro_examples * rows_per_example

