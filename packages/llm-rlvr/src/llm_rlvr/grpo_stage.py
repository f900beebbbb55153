"""The ``grpo`` stage: on-policy RL against a verifier, any advantage estimator and loss by name.

Each step of the one training loop (``llm_core.training.Trainer``) reads top to bottom: pick
prompts, sample a group per prompt (verified in the pool while the next chunk generates), turn
rewards into advantages, score the batch with the trainer (old and reference logprobs), and hand
the loop ``ppo_epochs x mini_batches`` batches of the clipped loss. The engine comes from the
registry; this package never imports it.

With one optimizer step per batch of rollouts (``ppo_epochs = mini_batches = 1``, no micro-batches)
the update's own forward pass is the policy before the update, so the old logprobs are its values
(``logprobs.detach()``, the ratio exactly 1) and the scoring pass is skipped, as TRL's GRPOTrainer
does when it takes one step per generation; the gap to the rollout engine's logprobs is then
measured in that same pass.

Resuming is the loop's: prompt order and sampling seeds are functions of (seed, step), so a killed
run continues from the last checkpoint and ends with the same weights as a run that was never
interrupted (CPU, fixed seed).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from llm_core.config import Config
from llm_core.data_io import load_problems
from llm_core.engines import RolloutEngine, TrainEngine
from llm_core.plots import plot_training_curves
from llm_core.refs import EstimatorRef, LossRef
from llm_core.specs import DecontaminateSpec, OptimizerSpec, SamplingSpec, ScheduleName
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.training import StatelessCallback, StepPlan, Trainer
from llm_core.types import Problem, StageResult
from llm_rlvr.options import RolloutOptions
from llm_rlvr.rollout import Group, sample_and_verify

log = logging.getLogger("llmt.rlvr")


class GrpoOptimizer(OptimizerSpec):
    lr: float = Field(1e-5, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleName = "constant"


class PeriodicEval(Config):
    """Greedy pass@1 on the ``heldout`` input every ``every`` steps (and before the first)."""

    every: int = Field(ge=1)
    problems: int = Field(200, ge=1, description="held-out problems per evaluation")


class OldLogprobs(Config):
    """What the clipped ratio divides by (the loss's ``old_logprobs``), and when the gap between the
    rollout engine's and the trainer's log-probs of the sampled tokens is worth a warning."""

    source: Literal["trainer", "rollout"] = Field(
        "trainer", description="trainer: the policy's own log-probs of the sampled tokens before the update "
        "(the exact on-policy ratio; the default); rollout: the sampler's, as it sampled them (the "
        "rollout engine's numeric gap then enters the ratio)")
    warn_gap: float = Field(0.05, gt=0, description="log a warning when a step's mean |rollout - trainer| "
                            "log-prob exceeds this (a rollout engine off the policy's weights or numerics)")


class GrpoConfig(RolloutOptions):
    estimator: EstimatorRef = Field(default_factory=lambda: EstimatorRef(name="grpo"))
    loss: LossRef = Field(default_factory=lambda: LossRef(name="grpo"),
                          description="a policy loss; its kl_coef > 0 adds a reference model (the input)")
    optimizer: GrpoOptimizer = Field(default_factory=GrpoOptimizer)
    group_size: int = Field(8, ge=2, description="samples per prompt")
    prompts_per_step: int = Field(8, ge=1)
    steps: int = Field(50, ge=1)
    ppo_epochs: int = Field(1, ge=1, description="passes over each batch of rollouts")
    mini_batches: int = Field(1, ge=1, description="optimizer steps per pass")
    micro_batch_size: int | None = Field(None, ge=1)
    old_logprobs: OldLogprobs = Field(default_factory=OldLogprobs)
    skip_uniform_groups: bool = Field(True, description="drop groups whose rewards are all equal "
                                      "(zero advantage: no signal, only cost)")
    eval: PeriodicEval | None = Field(None, description="greedy pass@1 on 'heldout' during training")
    checkpoint_every: int = Field(10, ge=1)
    keep_resume_state: bool = Field(False, description="keep resume/ after the stage completes")
    curves: bool = Field(True, description="draw curves.png (reward, pass@1) when the stage ends")
    decontaminate: DecontaminateSpec | None = Field(None, description="a load-time gate on 'problems': a "
                                                    "registered filter (e.g. contamination) drops or refuses them")


@dataclass
class Components:
    engine: TrainEngine
    rollout: RolloutEngine  # the engine itself, or a separate one fed its weights every step
    reference: TrainEngine | None
    estimator: Any
    loss: Any
    pool: Any


class GrpoStage:
    def __init__(self, config: GrpoConfig):
        self.config = config

    # -- setup --------------------------------------------------------------------------------

    def build(self, ctx: StageContext) -> Components:
        from llm_rlvr.pool import VerifierPool

        c = self.config
        checkpoint = ctx.input("checkpoint")
        engine = ctx.train_engine(c.engine, checkpoint=checkpoint, optimizer=c.optimizer,
                                  total_steps=c.steps * c.ppo_epochs * c.mini_batches)
        loss = c.loss.build(ctx.registries)
        reference = None
        if getattr(loss, "kl_coef", 0.0) > 0:  # always the input checkpoint, also after a resume
            reference = ctx.train_engine(c.engine, checkpoint=checkpoint)
        rollout = engine if c.rollout is None else ctx.rollout_engine(c.rollout, checkpoint=checkpoint)
        if not isinstance(rollout, RolloutEngine):
            raise TypeError(f"engine {c.engine.name!r} cannot generate; set rollout = {{name = \"torch\"}} "
                            "(or another registered rollout engine)")
        pool = VerifierPool(c.verifier, workers=c.verifier.workers, timeout_s=c.verifier.timeout_s)
        return Components(engine, rollout, reference, c.estimator.build(ctx.registries), with_diagnostics(loss),
                          pool)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        with limit_threads(c.threads):
            problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"),
                                     gate=ctx.record_gate(c.decontaminate))
            heldout = []
            if "heldout" in ctx.inputs and c.eval is not None:
                heldout = load_problems(ctx.input("heldout"), ctx.path("heldout_rejects.jsonl"))[: c.eval.problems]
            parts = self.build(ctx)
            callbacks = [LogprobGapWarning(c.old_logprobs)] + ([HeldoutEval(parts, heldout, c)] if heldout else [])
            trainer = Trainer(parts.engine, lambda step: self.plan_step(ctx, parts, problems, step), parts.loss,
                              c.steps, c.micro_batch_size, metrics_log=ctx, log_every=1,
                              checkpoint_every=c.checkpoint_every, state_uri=ctx.path("resume"),
                              keep_state=c.keep_resume_state, callbacks=callbacks, name=ctx.name,
                              headline="reward_mean")
            try:
                if heldout and trainer.start_step() == 0:
                    ctx.log_metrics({"eval_pass_at_1": evaluate(parts, heldout, c)}, step=0)
                trainer.run()
                parts.engine.export_hf(ctx.path("checkpoint"), {"stage": "grpo", "result": trainer.summary()})
            finally:
                parts.pool.close()
        if c.curves:
            plot_training_curves(ctx.store.read_metrics(ctx.name), ctx.path("curves.png"), title=ctx.name)
        last = trainer.history[-1] if trainer.history else {}
        metrics = {k: v for k, v in last.items() if k not in ("step", "time")}
        return StageResult(metrics=metrics, artifacts={"checkpoint": ctx.path("checkpoint")})

    def plan_step(self, ctx: StageContext, parts: Components, problems: list[Problem], step: int) -> StepPlan:
        """Rollouts, rewards and advantages of one step, as the batches of its optimizer steps."""
        c = self.config
        if parts.rollout is not parts.engine:
            parts.rollout.update_weights(parts.engine.hf_state_dict())
        batch_problems = prompts_for_step(problems, ctx.seed, step, c.prompts_per_step)
        sampling = c.sampling.with_seed(ctx.seed * 1_000_003 + step * 7919)
        groups, stats = sample_and_verify(parts.rollout, parts.pool, batch_problems, c.group_size, sampling,
                                          c.prompt, c.chunk_prompts)
        metrics = rollout_metrics(groups)
        metrics.update(rollout_tokens_per_s=stats.tokens_per_second, verify_wait_s=stats.verify_wait_seconds)
        built = build_batch(parts, groups, c.skip_uniform_groups, c.old_logprobs.source,
                            score=not self.update_is_on_policy)
        if built is None:
            metrics["trained_samples"] = 0
            return StepPlan([], metrics)
        batch, gap = built
        metrics["trained_samples"] = len(batch["input_ids"])
        if gap is not None:  # else the loss measures it, in the update's forward pass
            metrics.update(logprob_gap=gap.mean, logprob_gap_max=gap.max)
        return StepPlan(mini_batches(batch, c.ppo_epochs, c.mini_batches), metrics)

    @property
    def update_is_on_policy(self) -> bool:
        """Whether the update's forward pass runs the policy that sampled the batch: one optimizer
        step per batch, in one pass (micro-batches would each report their own largest gap)."""
        c = self.config
        return c.ppo_epochs == 1 and c.mini_batches == 1 and c.micro_batch_size is None


def mini_batches(batch: Mapping[str, list], epochs: int, count: int) -> list[dict[str, list]]:
    """``epochs`` seeded shuffles of the rows, each cut into ``count`` mini-batches, in order."""
    rows = len(batch["input_ids"])
    order = list(range(rows))
    size = -(-rows // count)
    out = []
    for epoch in range(epochs):
        random.Random(epoch).shuffle(order)
        for start in range(0, rows, size):
            index = order[start:start + size]
            out.append({k: [v[i] for i in index] for k, v in batch.items()})
    return out


class HeldoutEval(StatelessCallback):
    """Greedy pass@1 of the current policy on held-out problems every ``eval.every`` steps."""

    name = "heldout_eval"

    def __init__(self, parts: Components, heldout: list[Problem], config: GrpoConfig):
        self.parts, self.heldout, self.config = parts, heldout, config

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        if (step + 1) % self.config.eval.every == 0:
            if self.parts.rollout is not self.parts.engine:
                self.parts.rollout.update_weights(engine.hf_state_dict())
            metrics["eval_pass_at_1"] = evaluate(self.parts, self.heldout, self.config)


class LogprobGapWarning(StatelessCallback):
    """A warning for every step whose mean gap between the rollout engine's and the trainer's
    log-probs of the sampled tokens exceeds ``warn_gap`` (a rollout engine off the policy)."""

    name = "logprob_gap_warning"

    def __init__(self, options: OldLogprobs):
        self.options = options

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        gap = float(metrics.get("logprob_gap", 0.0))
        if gap > self.options.warn_gap:
            log.warning("step %d: rollout and trainer log-probs of the sampled tokens differ by %.3g on average "
                        "(max %.3g; warn_gap %.3g); the ratio uses the %s's", step + 1, gap,
                        float(metrics["logprob_gap_max"]), self.options.warn_gap, self.options.source)


def with_diagnostics(policy_loss: Any) -> Any:
    """Wrap a policy loss as the stage trains with it:

    - without ``old_logprobs`` in the batch (an update on the policy that sampled it) the old
      log-probs are the update's own, detached: the ratio is exactly 1 and its gradient the
      policy gradient;
    - it reports the policy's mean token entropy;
    - given ``rollout_logprobs`` (the rollout engine's, aligned like the labels), the gap to the
      trainer's: ``logprob_gap``, the mean over samples of each sample's mean |difference|, and
      ``logprob_gap_max``, the largest single token's.
    """

    def loss(logits, logprobs, advantages, mask, old_logprobs=None, ref_logprobs=None, rollout_logprobs=None):
        import torch

        old = logprobs.detach() if old_logprobs is None else old_logprobs
        value, metrics = policy_loss(logprobs, old, advantages, mask, ref_logprobs=ref_logprobs)
        with torch.no_grad():
            logp = torch.log_softmax(logits.float(), dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)
            metrics["entropy"] = (entropy * mask).sum() / mask.sum().clamp(min=1.0)
            if rollout_logprobs is not None:
                metrics["logprob_gap"], metrics["logprob_gap_max"] = logprob_gap(logprobs, rollout_logprobs, mask)
        return value, metrics

    return loss


def prompts_for_step(problems: list[Problem], seed: int, step: int, count: int) -> list[Problem]:
    """The step's prompts: epochs of seeded permutations, read in order (a pure function of step)."""
    out = []
    for index in range(step * count, (step + 1) * count):
        epoch, offset = divmod(index, len(problems))
        order = list(range(len(problems)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.append(problems[order[offset]])
    return out


@dataclass(frozen=True)
class LogprobGap:
    """|rollout - trainer| log-prob of the sampled tokens: the mean over samples of each sample's
    mean, and the largest single token's."""

    mean: float
    max: float


def build_batch(parts: Components, groups: list[Group], skip_uniform: bool, old_source: str = "trainer",
                score: bool = True) -> tuple[dict[str, Any], LogprobGap | None] | None:
    """Rows of prompt + completion, completion-only loss mask, advantages, old / ref logprobs; and
    the gap between the sampler's and the trainer's logprobs of the same tokens. ``old_logprobs``
    are the trainer's (``old_source = "trainer"``) or the sampler's (``"rollout"``).

    ``score = False`` (an update on the policy that sampled the batch) skips the trainer's scoring
    pass: the rows carry the sampler's logprobs as ``rollout_logprobs`` for the loss to measure the
    gap (``with_diagnostics``), no ``old_logprobs`` with the trainer's source, and the gap is None."""
    import torch

    rewards = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
    advantages = parts.estimator(rewards)
    rows: dict[str, list] = {"input_ids": [], "loss_mask": [], "advantages": []}
    rollout_lps = []
    for g, group in enumerate(groups):
        if skip_uniform and len(set(group.rewards)) == 1:
            continue
        for k, sample in enumerate(group.samples):
            if not sample.token_ids:
                continue
            rows["input_ids"].append(group.prompt_ids + sample.token_ids)
            rows["loss_mask"].append([0] * len(group.prompt_ids) + [1] * len(sample.token_ids))
            rows["advantages"].append(float(advantages[g, k]))
            rollout_lps.append((len(group.prompt_ids), sample.logprobs))
    if not rows["input_ids"]:
        return None
    # Each row trimmed to its own length, so that any subset of rows pads consistently. Labels are
    # shifted one to the left: the logprob of token P + j sits at P - 1 + j.
    sampled = [[0.0] * (start - 1) + list(lps) + [0.0] for start, lps in rollout_lps]
    if old_source == "rollout":
        rows["old_logprobs"] = sampled
    gap = None
    if score:
        old = parts.engine.logprobs(rows)
        if old_source != "rollout":
            rows["old_logprobs"] = [old[i, :len(ids)].tolist() for i, ids in enumerate(rows["input_ids"])]
        rollout, completion = torch.zeros_like(old), torch.zeros_like(old)
        for i, (start, lps) in enumerate(rollout_lps):
            rollout[i, start - 1:start - 1 + len(lps)] = torch.tensor(lps)
            completion[i, start - 1:start - 1 + len(lps)] = 1.0
        mean, largest = logprob_gap(old, rollout, completion)
        gap = LogprobGap(mean=float(mean), max=float(largest))
    else:
        rows["rollout_logprobs"] = sampled
    if parts.reference is not None:
        ref = parts.reference.logprobs(rows)
        rows["ref_logprobs"] = [ref[i, :len(ids)].tolist() for i, ids in enumerate(rows["input_ids"])]
    return rows, gap


def logprob_gap(trainer: Any, rollout: Any, mask: Any) -> tuple[Any, Any]:
    """|trainer - rollout| log-prob of the sampled tokens (where ``mask``; all (B, T) tensors): the
    mean over samples of each sample's mean, and the largest single token's."""
    gaps = (trainer - rollout).abs() * mask
    return (gaps.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean(), gaps.max()


def rollout_metrics(groups: list[Group]) -> dict[str, float]:
    rewards = [r for g in groups for r in g.rewards]
    passed = [v.passed for g in groups for v in g.verdicts]
    lengths = [len(s.token_ids) for g in groups for s in g.samples]
    mean = sum(rewards) / len(rewards)
    std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
    return {"reward_mean": mean, "reward_std": std, "pass_rate": sum(passed) / len(passed),
            "response_len": sum(lengths) / len(lengths),
            "uniform_groups": sum(len(set(g.rewards)) == 1 for g in groups) / len(groups),
            "truncated": sum(s.finish_reason == "length" for g in groups for s in g.samples) / len(lengths)}


def evaluate(parts: Components, problems: list[Problem], config: RolloutOptions) -> float:
    """Greedy pass@1 of the current policy."""
    greedy = SamplingSpec(max_new_tokens=config.sampling.max_new_tokens, temperature=0.0)
    groups, _ = sample_and_verify(parts.rollout, parts.pool, problems, 1, greedy, config.prompt,
                                  max(config.chunk_prompts, 64))
    return sum(g.verdicts[0].passed for g in groups) / len(groups)
