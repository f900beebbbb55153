"""The ``ppo`` stage: RLHF with PPO (Ouyang et al. 2022), the reward from a reward model or any verifier.

Each step of the one training loop reads top to bottom: pick prompts, sample completions from the
policy, score them (the ``reward_model`` input, else ``verifier``), compute per-token rewards with
the KL penalty to the reference (the input checkpoint, frozen), values from the policy's value
head, GAE advantages and returns (``llm_prefopt.ppo``), then hand the loop ``ppo_epochs x
mini_batches`` batches of the PPO loss; with ``target_kl`` the step stops early once a batch's
approximate KL to the rollout policy passes 1.5 x target_kl. The KL coefficient is fixed or
adapted (``kl = {kind = "adaptive"}``), its state saved with the run. Prompt order and sampling
seeds are functions of (seed, step): a killed run resumes with the same result.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from pydantic import Field

from llm_core.engines import RolloutEngine, TrainEngine
from llm_core.refs import LossRef, VerifierRef
from llm_core.specs import EngineSpec, RolloutSpec, SamplingSpec, ScheduleName
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.training import StepPlan
from llm_core.types import StageResult
from llm_prefopt.options import LoopOptions, PrefOptimizer, PromptOptions, step_indices, train_and_export
from llm_prefopt.ppo import KlControl, KlController, gae, masked_whiten, token_rewards
from llm_prefopt.reward_model import RewardModelScorerConfig, RewardModelVerifier
from llm_prefopt.sampling import Problem, completion_text, generate, load_problems, prompt_ids, score, user_turn

log = logging.getLogger("llmt.prefopt")


class PpoOptimizer(PrefOptimizer):
    lr: float = Field(1e-5, gt=0, description="peak learning rate")
    schedule: ScheduleName = "constant"


class PpoStageConfig(LoopOptions):
    optimizer: PpoOptimizer = Field(default_factory=PpoOptimizer)
    rollout: RolloutSpec | None = Field(None, description="a separate rollout engine fed the policy's weights "
                                        "each step; None: the policy samples itself")
    verifier: VerifierRef | None = Field(None, description="the reward when there is no 'reward_model' input")
    loss: LossRef = Field(default_factory=lambda: LossRef(name="ppo"))
    kl: KlControl = Field(default_factory=KlControl)
    sampling: SamplingSpec = Field(default_factory=lambda: SamplingSpec(max_new_tokens=64))
    prompt: PromptOptions = Field(default_factory=PromptOptions)
    prompts_per_step: int = Field(8, ge=1)
    samples_per_prompt: int = Field(1, ge=1)
    ppo_epochs: int = Field(4, ge=1, description="passes over each step's rollouts")
    mini_batches: int = Field(1, ge=1, description="optimizer steps per pass")
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    whiten_rewards: bool = Field(False, description="divide per-token rewards by their batch std")
    target_kl: float | None = Field(None, gt=0, description="stop a step's epochs once approx_kl > 1.5 x this")
    chunk_prompts: int = Field(16, ge=1)


class PpoStage:
    def __init__(self, config: PpoStageConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def reward(self, ctx: StageContext) -> Any:
        c = self.config
        if "reward_model" in ctx.inputs:
            return RewardModelVerifier(RewardModelScorerConfig(checkpoint=ctx.input("reward_model"), engine=EngineSpec(
                name=c.engine.name, device=c.engine.device, precision=c.engine.precision, options=c.engine.options),
                system_prompt=c.prompt.system_prompt))
        if c.verifier is None:
            raise ValueError(f"stage {ctx.name!r}: give a 'reward_model' input or a verifier (verifier = \"math\")")
        return c.verifier.build(ctx.registries)

    def _run(self, ctx: StageContext) -> StageResult:
        c = self.config
        checkpoint = ctx.input("checkpoint")
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"), c.max_rejects_fraction,
                                 gate=ctx.record_gate(c.decontaminate))
        total_steps = c.steps * c.ppo_epochs * c.mini_batches
        engine = ctx.train_engine(c.engine, checkpoint=checkpoint, optimizer=c.optimizer, value_head=True,
                                  total_steps=total_steps)
        rollout = engine if c.rollout is None else ctx.rollout_engine(c.rollout, checkpoint=checkpoint)
        if not isinstance(rollout, RolloutEngine):
            raise TypeError(f"engine {c.engine.name!r} cannot generate; set rollout = {{name = \"torch\"}}")
        reference = ctx.train_engine(c.engine, checkpoint=checkpoint)
        controller = KlController(c.kl, c.prompts_per_step * c.samples_per_prompt)
        verifier = self.reward(ctx)

        def make_step(step: int) -> StepPlan:
            if rollout is not engine:
                rollout.update_weights(engine.hf_state_dict())
            picked = [problems[i] for i in step_indices(len(problems), ctx.seed, step, c.prompts_per_step)]
            rows, metrics = self.rollouts(engine, rollout, reference, verifier, picked, controller.value,
                                          c.sampling.with_seed(ctx.seed * 1_000_003 + step * 7919))
            batches = shuffled_mini_batches(rows, c.ppo_epochs, c.mini_batches, ctx.seed * 7919 + step)
            stop = None if c.target_kl is None else (lambda m: m.get("approx_kl", 0.0) > 1.5 * c.target_kl)
            return StepPlan(batches, metrics, stop_early=stop)

        summary = {"stage": "ppo", "kl": c.kl.kind, "reward": "reward_model" if "reward_model" in ctx.inputs
                   else c.verifier.name}
        return train_and_export(ctx, engine, c, make_step, c.loss.build(ctx.registries), c.steps, [controller],
                                summary, headline="reward_mean")

    def rollouts(self, engine: TrainEngine, rollout: RolloutEngine, reference: TrainEngine, verifier: Any,
                 problems: list[Problem], kl_coef: float, sampling: SamplingSpec) -> tuple[dict[str, list], dict]:
        """Rows of prompt + completion with old log-probs / values, advantages and returns (per token)."""
        import torch

        c = self.config
        tok = rollout.tokenizer
        ids = [prompt_ids(tok, user_turn(p.prompt, c.prompt.system_prompt)) for p in problems]
        groups = generate(rollout, ids, c.samples_per_prompt, sampling, c.chunk_prompts)
        samples = [(p, prompt, s) for p, prompt, group in zip(problems, ids, groups, strict=True) for s in group
                   if s.token_ids]
        texts = [completion_text(tok, s) for _, _, s in samples]
        verdicts = score(verifier, [p.prompt for p, _, _ in samples], texts, [p.reference for p, _, _ in samples])
        rows: dict[str, list] = {"input_ids": [prompt + s.token_ids for _, prompt, s in samples],
                                 "loss_mask": [[0] * len(prompt) + [1] * len(s.token_ids) for _, prompt, s in samples]}
        old_logprobs, ref_logprobs = engine.logprobs(rows), reference.logprobs(rows)
        old_values = engine.values(rows).float()
        mask = aligned_mask(rows["loss_mask"], old_logprobs.shape[1])
        scores = torch.tensor([v.score for v in verdicts], dtype=torch.float32)
        rewards, kl = token_rewards(scores, old_logprobs, ref_logprobs, mask, kl_coef)
        if c.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = gae(rewards, old_values * mask, mask, c.gamma, c.lam)
        advantages = masked_whiten(advantages, mask) * mask
        for key, value in (("old_logprobs", old_logprobs), ("old_values", old_values), ("advantages", advantages),
                           ("returns", returns)):
            rows[key] = [value[i, :len(r)].tolist() for i, r in enumerate(rows["input_ids"])]
        lengths = [len(s.token_ids) for _, _, s in samples]
        metrics = {"reward_mean": float(scores.mean()), "pass_rate": sum(v.passed for v in verdicts) / len(verdicts),
                   "kl": float(kl.sum(1).mean()), "kl_coef": kl_coef, "response_len": sum(lengths) / len(lengths),
                   "truncated": sum(s.finish_reason == "length" for _, _, s in samples) / len(samples),
                   "rollout_value_mean": float((old_values * mask).sum() / mask.sum())}
        return rows, metrics


def aligned_mask(loss_mask: list[list[int]], width: int) -> Any:
    """The label-aligned completion mask (position t scores token t + 1) as a (B, width) tensor."""
    import torch

    mask = torch.zeros(len(loss_mask), width)
    for i, row in enumerate(loss_mask):
        shifted = row[1:]
        mask[i, :len(shifted)] = torch.tensor(shifted, dtype=torch.float32)
    return mask


def shuffled_mini_batches(rows: dict[str, list], epochs: int, count: int, seed: int) -> list[dict[str, list]]:
    """``epochs`` seeded shuffles of the rows, each cut into ``count`` mini-batches, in order."""
    n = len(rows["input_ids"])
    size = -(-n // count)
    out = []
    for epoch in range(epochs):
        order = list(range(n))
        random.Random(seed * 31 + epoch).shuffle(order)
        for start in range(0, n, size):
            index = order[start:start + size]
            out.append({k: [v[i] for i in index] for k, v in rows.items()})
    return out

