"""The ``grpo`` stage: on-policy RL against a verifier, any advantage estimator and loss by name.

Each step reads top to bottom: pick prompts, sample a group per prompt (verified in the pool while
the next chunk generates), turn rewards into advantages, score the batch with the trainer (old and
reference logprobs), run ``ppo_epochs`` passes of the clipped loss, log, checkpoint. The engine
comes from the registry; this package never imports it.

Resuming: every ``checkpoint_every`` steps ``resume/`` holds weights, AdamW state, the step and
the rollout position. Prompt order and sampling seeds are functions of (seed, step), so a killed
run continues exactly where the checkpoint left it and ends with the same weights as a run that
was never interrupted (CPU, fixed seed).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from llm_core.artifacts import atomic_open, exists, join
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import SamplingParams, StageResult
from llm_rlvr.rollout import Group, Problem, limit_threads, load_problems, sample_and_verify

log = logging.getLogger("llmt.rlvr")


class RolloutOptions(Config):
    """How completions are sampled and judged (shared by ``grpo`` and ``rejection_sampling``)."""

    verifier: str = Field("math", description="registered verifier giving the reward")
    verifier_options: dict[str, Any] = Field(default_factory=dict)
    verifier_workers: int = Field(2, ge=0, description="verifier processes (0: in the trainer process)")
    verifier_timeout_s: float = Field(30.0, gt=0, description="per-sample limit; a timeout scores 0")
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0: no top-k cut")
    system_prompt: str = ""
    prompt_format: str | None = Field(None, description="plain-text prompt such as 'Question: {prompt}\\n"
                                      "Solution:' for a base model; default: the chat template")
    response_prefix: str = Field("", description="text the answer starts with (e.g. '<think>')")
    chunk_prompts: int = Field(16, ge=1, description="prompts per generate call")

    @field_validator("prompt_format")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "{prompt}" not in value:
            raise ValueError("prompt_format must contain the placeholder {prompt}")
        return value

    engine: str = Field("torch", description="registered engine (trains and samples)")
    device: str = "cpu"
    threads: int | None = Field(None, ge=1, description="torch CPU threads")


class GrpoConfig(RolloutOptions):
    estimator: str = Field("grpo", description="registered advantage estimator")
    estimator_options: dict[str, Any] = Field(default_factory=dict)
    loss: str = Field("grpo", description="registered policy loss")
    loss_options: dict[str, Any] = Field(default_factory=dict)
    kl_coef: float = Field(0.0, ge=0, description="k3 KL to the initial policy (0: no reference model)")
    group_size: int = Field(8, ge=2, description="samples per prompt")
    prompts_per_step: int = Field(8, ge=1)
    steps: int = Field(50, ge=1)
    ppo_epochs: int = Field(1, ge=1, description="passes over each batch of rollouts")
    mini_batches: int = Field(1, ge=1, description="optimizer steps per pass")
    micro_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(1e-5, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    skip_uniform_groups: bool = Field(True, description="drop groups whose rewards are all equal "
                                      "(zero advantage: no signal, only cost)")
    eval_every: int | None = Field(None, ge=1, description="greedy pass@1 on 'heldout' every N steps")
    eval_problems: int = Field(200, ge=1, description="held-out problems per periodic eval")
    checkpoint_every: int = Field(10, ge=1)


@dataclass
class Components:
    engine: Any
    reference: Any
    estimator: Any
    loss: Any
    pool: Any


class GrpoStage:
    def __init__(self, **options: Any):
        self.o = GrpoConfig(**options)

    # -- setup --------------------------------------------------------------------------------

    def build(self, ctx: StageContext) -> Components:
        from llm_rlvr.pool import VerifierPool

        o = self.o
        limit_threads(o.threads)
        checkpoint = ctx.input("checkpoint")
        engine = ctx.registries.engines.build(o.engine, {
            "checkpoint": checkpoint, "lr": o.lr, "warmup_steps": o.warmup_steps, "schedule": "constant",
            "total_steps": o.steps * o.ppo_epochs * o.mini_batches, "weight_decay": o.weight_decay,
            "grad_clip": o.grad_clip, "seed": ctx.seed, "device": o.device})
        reference = None
        if o.kl_coef > 0:  # always the input checkpoint, also after a resume
            reference = ctx.registries.engines.build(o.engine, {"checkpoint": checkpoint, "trainable": False,
                                                                "device": o.device})
        loss_entry = ctx.registries.losses.get(o.loss)
        loss_options = dict(o.loss_options)
        if o.kl_coef > 0:
            if loss_entry.config is None or "kl_coef" not in loss_entry.config.model_fields:
                raise ValueError(f"kl_coef={o.kl_coef} but loss {o.loss!r} takes no kl_coef option")
            loss_options["kl_coef"] = o.kl_coef
        return Components(engine, reference,
                          ctx.registries.advantage_estimators.build(o.estimator, o.estimator_options),
                          with_entropy(loss_entry.build(loss_options)),
                          VerifierPool(o.verifier, o.verifier_options, workers=o.verifier_workers,
                                       timeout_s=o.verifier_timeout_s))

    # -- the loop -------------------------------------------------------------------------------

    def run(self, ctx: StageContext) -> StageResult:
        o = self.o
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"))
        heldout = (load_problems(ctx.input("heldout"), ctx.path("heldout_rejects.jsonl"))[: o.eval_problems]
                   if "heldout" in ctx.inputs and o.eval_every else [])
        c = self.build(ctx)
        start_step = resume(c.engine, ctx.path("resume"))
        try:
            if start_step == 0 and heldout:
                ctx.log_metrics({"eval_pass_at_1": evaluate(c, heldout, o)}, step=0)
            last: dict[str, float] = {}
            for step in range(start_step, o.steps):
                last = self.step(ctx, c, problems, step)
                if heldout and (step + 1) % o.eval_every == 0:
                    last["eval_pass_at_1"] = evaluate(c, heldout, o)
                ctx.log_metrics(last, step=step + 1)
                if (step + 1) % o.checkpoint_every == 0 or step + 1 == o.steps:
                    state = rollout_state(ctx, o, step + 1)
                    c.engine.save(ctx.path("resume"), extra={"step": step + 1, "rollout": state})
            c.engine.export_hf(ctx.path("checkpoint"), extra={"stage": "grpo"})
        finally:
            c.pool.close()
        return StageResult(metrics={k: v for k, v in last.items() if k != "time"},
                           artifacts={"checkpoint": ctx.path("checkpoint")})

    def step(self, ctx: StageContext, c: Components, problems: list[Problem], step: int) -> dict[str, float]:
        o = self.o
        t0 = time.perf_counter()
        batch_problems = prompts_for_step(problems, ctx.seed, step, o.prompts_per_step)
        sampling = SamplingParams(max_new_tokens=o.max_new_tokens, temperature=o.temperature, top_p=o.top_p,
                                  top_k=o.top_k, seed=ctx.seed * 1_000_003 + step * 7919)
        groups, stats = sample_and_verify(c.engine, c.pool, batch_problems, o.group_size, sampling,
                                          response_prefix=o.response_prefix, system_prompt=o.system_prompt,
                                          prompt_format=o.prompt_format,
                                          chunk_prompts=o.chunk_prompts)
        metrics = rollout_metrics(groups)
        metrics.update(rollout_tokens_per_s=stats.tokens_per_second, verify_wait_s=stats.verify_wait_seconds)
        built = build_batch(c, groups, o.skip_uniform_groups)
        if built is None:
            metrics.update(trained_samples=0, step_s=time.perf_counter() - t0)
            return metrics
        batch, metrics["logprob_gap"] = built
        metrics.update(self.optimize(c, batch))
        metrics.update(trained_samples=len(batch["input_ids"]), step_s=time.perf_counter() - t0)
        return metrics

    def optimize(self, c: Components, batch: dict[str, Any]) -> dict[str, float]:
        rows = len(batch["input_ids"])
        order = list(range(rows))
        size = -(-rows // self.o.mini_batches)
        totals: dict[str, float] = {}
        count = 0
        for epoch in range(self.o.ppo_epochs):
            random.Random(epoch).shuffle(order)
            for start in range(0, rows, size):
                index = order[start:start + size]
                part = {k: [v[i] for i in index] for k, v in batch.items()}
                for key, value in c.engine.train_step(part, c.loss, self.o.micro_batch_size).items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        return {k: v / count for k, v in totals.items()}


def with_entropy(policy_loss: Any) -> Any:
    """Wrap a policy loss so that it also reports the policy's mean token entropy."""

    def loss(logits, logprobs, old_logprobs, advantages, mask, ref_logprobs=None):
        import torch

        value, metrics = policy_loss(logprobs, old_logprobs, advantages, mask, ref_logprobs=ref_logprobs)
        with torch.no_grad():
            logp = torch.log_softmax(logits.float(), dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)
            metrics["entropy"] = (entropy * mask).sum() / mask.sum().clamp(min=1.0)
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


def build_batch(c: Components, groups: list[Group], skip_uniform: bool) -> tuple[dict[str, Any], float] | None:
    """Rows of prompt + completion, completion-only loss mask, advantages, old / ref logprobs; and
    the mean gap between the sampler's and the trainer's logprobs of the same tokens."""
    import torch

    rewards = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
    advantages = c.estimator(rewards)
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
    old = c.engine.logprobs(rows)
    # Each row trimmed to its own length, so that any subset of rows pads consistently.
    rows["old_logprobs"] = [old[i, :len(ids)].tolist() for i, ids in enumerate(rows["input_ids"])]
    gaps = [logprob_gap(old[i], start, lps) for i, (start, lps) in enumerate(rollout_lps)]
    if c.reference is not None:
        ref = c.reference.logprobs(rows)
        rows["ref_logprobs"] = [ref[i, :len(ids)].tolist() for i, ids in enumerate(rows["input_ids"])]
    return rows, sum(gaps) / len(gaps)


def logprob_gap(trainer_row: Any, prompt_len: int, rollout: list[float]) -> float:
    """Mean |trainer - sampler| logprob over a completion (labels are shifted one to the left)."""
    trainer = trainer_row[prompt_len - 1: prompt_len - 1 + len(rollout)].tolist()
    return sum(abs(a - b) for a, b in zip(trainer, rollout, strict=True)) / max(len(rollout), 1)


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


def evaluate(c: Components, problems: list[Problem], o: RolloutOptions) -> float:
    """Greedy pass@1 of the current policy."""
    greedy = SamplingParams(max_new_tokens=o.max_new_tokens, temperature=0.0)
    groups, _ = sample_and_verify(c.engine, c.pool, problems, 1, greedy, response_prefix=o.response_prefix,
                                  system_prompt=o.system_prompt, prompt_format=o.prompt_format,
                                  chunk_prompts=max(o.chunk_prompts, 64))
    return sum(g.verdicts[0].passed for g in groups) / len(groups)


def resume(engine: Any, uri: str) -> int:
    """Load ``resume/`` when a previous attempt left one; returns the step to continue from."""
    if not exists(join(uri, "training_state.pt")):
        return 0
    extra = engine.load(uri)
    step = int(extra.get("step", 0))
    log.info("grpo: resuming from step %d (%s)", step, uri)
    return step


def rollout_state(ctx: StageContext, o: GrpoConfig, next_step: int) -> dict[str, Any]:
    """Where the rollouts stand: enough to regenerate exactly the next batch."""
    state = {"next_step": next_step, "prompt_cursor": next_step * o.prompts_per_step, "seed": ctx.seed}
    with atomic_open(ctx.path("rollout_state.json"), "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(state))
    return state
