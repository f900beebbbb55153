"""The ``distill`` stage: a student learns a frozen teacher's next-token distributions.

``mode = "soft"``: soft-label KD on the data set's sequences (the teacher's own samples, say),
with the teacher scored every step (online) or once into the top-k cache ``teacher_topk.npz``
(``teacher.cache``). ``mode = "on_policy"``: GKD (Agarwal et al. 2024): each step trains, with
probability ``on_policy.student_fraction`` (lambda), on the student's own samples of the data
set's prompts, which the teacher scores, else on the data set's sequences; with the ``jsd`` loss
that is GKD, with ``minillm`` MiniLLM's reverse-KL policy gradient.

Every step goes through the one training loop (``llm_core.training.Trainer``) as a ``StepPlan``:
the batch is built (and sampled) in ``plan_step``, a pure function of the step, so a killed run
resumes exactly. Inputs: ``student`` and ``teacher`` (checkpoint folders), ``conversations``
(the SFT set). Both must share one vocabulary, which is checked before any training.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from llm_core.artifacts import exists, join
from llm_core.config import Config
from llm_core.engines import RolloutEngine, TrainEngine
from llm_core.plots import plot_training_curves
from llm_core.refs import LossRef
from llm_core.specs import DecontaminateSpec, EngineSpec, RolloutSpec
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.training import StatelessCallback, StepPlan, Trainer, epoch_order
from llm_core.types import StageResult
from llm_distill.examples import Example, load_examples, padded
from llm_distill.options import DistillOptimizer, OnPolicySpec, TeacherSpec
from llm_distill.teacher import TopKCache, check_same_vocabulary, with_teacher

log = logging.getLogger("llmt.distill")
CACHE_FILE = "teacher_topk.npz"


class DistillConfig(Config):
    mode: Literal["soft", "on_policy"] = Field("soft", description="soft: the data set's sequences; "
                                               "on_policy: GKD's mix with the student's own samples")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="the student's engine")
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    loss: LossRef = Field(default_factory=lambda: LossRef(name="forward_kl"),
                          description="forward_kl, reverse_kl, jsd, minillm, or any loss taking the teacher keys")
    on_policy: OnPolicySpec = Field(default_factory=OnPolicySpec, description="mode on_policy only")
    rollout: RolloutSpec | None = Field(None, description="a separate engine for the student's samples, fed "
                                        "its weights each on-policy step; None: the student's engine samples")
    optimizer: DistillOptimizer = Field(default_factory=DistillOptimizer)
    seq_len: int = Field(256, ge=8, description="longest conversation, in tokens")
    batch_size: int = Field(16, ge=1, description="sequences per optimizer step")
    micro_batch_size: int | None = Field(None, ge=1)
    epochs: int | None = Field(1, ge=1, description="passes over the data set; null: 'steps'")
    steps: int = Field(100, ge=1, description="optimizer steps when epochs is null")
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    keep_resume_state: bool = False
    max_rejects_fraction: float = Field(0.5, ge=0, le=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads")
    decontaminate: DecontaminateSpec | None = Field(None, description="a load-time gate on 'conversations': "
                                                    "a registered filter (e.g. contamination) drops or refuses "
                                                    "flagged chats")
    curves: bool = True

    @model_validator(mode="after")
    def _cache_is_soft(self) -> DistillConfig:
        if self.teacher.cache and self.mode != "soft":
            raise ValueError("teacher.cache precomputes the teacher on the data set, which mode 'on_policy' "
                             "does not train on alone; set teacher.cache = false or mode = 'soft'")
        return self


@dataclass
class Parts:
    student: TrainEngine
    teacher: TrainEngine
    rollout: RolloutEngine | None  # on-policy only: what samples the student's answers
    examples: list[Example]
    cache: TopKCache | None


def require_checkpoint(uri: str, role: str, stage: str) -> None:
    """An input checkpoint must be a folder with ``config.json``; say which and how to fix it."""
    if not exists(join(uri, "config.json")):
        raise FileNotFoundError(f"stage {stage!r}: the {role} checkpoint {uri} does not exist (no config.json "
                                f"there); point inputs.{role} at a checkpoint folder (a stage's "
                                "'<stage>/checkpoint', or an HF Llama folder), or run the recipe that writes it first")


class DistillStage:
    def __init__(self, config: DistillConfig):
        self.config = config

    def build(self, ctx: StageContext) -> Parts:
        """Engines, data and cache, in the order that fails fast: paths, vocabularies, then scoring."""
        c = self.config
        student_uri, teacher_uri = ctx.input("student"), ctx.input("teacher")
        require_checkpoint(teacher_uri, "teacher", ctx.name)
        require_checkpoint(student_uri, "student", ctx.name)
        longest = c.seq_len + 1 + (c.on_policy.sampling.max_new_tokens if c.mode == "on_policy" else 0)
        teacher = ctx.train_engine(c.teacher.engine, checkpoint=teacher_uri, max_seq_len=longest)
        template = teacher.tokenizer.chat_template
        if template is None:
            raise ValueError(f"stage {ctx.name!r}: the teacher {teacher_uri} has no chat template, so the data "
                             "cannot be rendered as it saw it; fine-tune the teacher on chats first (an sft stage)")
        # The student renders and answers in the teacher's template: the teacher's distributions are
        # conditioned on that rendering. Tokenizing with the teacher's tokenizer is safe: the two
        # vocabularies are checked equal right after.
        examples = load_examples(ctx.input("conversations"), teacher.tokenizer, c.seq_len,
                                 rejects_uri=ctx.path("rejects.jsonl"), stage=ctx.name,
                                 max_rejects_fraction=c.max_rejects_fraction,
                                 gate=ctx.record_gate(c.decontaminate))
        student = ctx.train_engine(c.engine, checkpoint=student_uri, chat_template=template,
                                   max_seq_len=longest,
                                   optimizer=c.optimizer, total_steps=self.steps(len(examples)))
        check_same_vocabulary(student, teacher, student_uri, teacher_uri)
        rollout = self.rollout_engine(ctx, student, student_uri) if c.mode == "on_policy" else None
        cache = self.teacher_cache(ctx, teacher, examples) if c.teacher.cache else None
        return Parts(student, teacher, rollout, examples, cache)

    def steps(self, count: int) -> int:
        c = self.config
        return c.epochs * math.ceil(count / c.batch_size) if c.epochs else c.steps

    def rollout_engine(self, ctx: StageContext, student: TrainEngine, student_uri: str) -> RolloutEngine:
        c = self.config
        rollout = student if c.rollout is None else ctx.rollout_engine(c.rollout, checkpoint=student_uri)
        if not isinstance(rollout, RolloutEngine):
            raise TypeError(f"engine {c.engine.name!r} cannot generate the student's samples; set rollout = "
                            "{name = \"torch\"} (or another registered rollout engine)")
        return rollout

    def teacher_cache(self, ctx: StageContext, teacher: TrainEngine, examples: list[Example]) -> TopKCache:
        """The top-k cache of the stage folder (built once; a resumed run reads it back)."""
        uri = ctx.path(CACHE_FILE)
        cache = TopKCache.load(uri)
        if cache is None or len(cache.offsets) != len(examples) + 1:
            cache = TopKCache.build(teacher, examples, self.config.teacher.top_k, teacher.tokenizer.pad_id,
                                    self.config.batch_size)
            size = cache.save(uri)
            ctx.log_metrics({"teacher_cache_bytes": size, "teacher_cache_positions": int(cache.values.shape[0]),
                             "teacher_cache_k": cache.k, "full_vocabulary_bytes": cache.full_vocabulary_bytes()})
            log.info("%s: teacher top-%d cache %s: %.2f MB (the whole vocabulary would take %.2f MB)", ctx.name,
                     cache.k, uri, size / 1e6, cache.full_vocabulary_bytes() / 1e6)
        return cache

    # -- the loop -------------------------------------------------------------------------------

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        with limit_threads(c.threads):
            parts = self.build(ctx)
            trainer = Trainer(parts.student, lambda step: self.plan_step(ctx, parts, step),
                              c.loss.build(ctx.registries), self.steps(len(parts.examples)), c.micro_batch_size,
                              metrics_log=ctx, log_every=c.log_every, checkpoint_every=c.checkpoint_every,
                              state_uri=ctx.path("resume"), keep_state=c.keep_resume_state,
                              callbacks=[SampleSource(), StudentTokens()], name=ctx.name)
            trainer.run()
            summary = {**trainer.summary(), **exposure_summary(trainer.history)}
            parts.student.export_hf(ctx.path("checkpoint"), {"stage": "distill", "mode": c.mode,
                                                             "loss": c.loss.name, "result": summary})
        if c.curves:
            plot_training_curves(ctx.store.read_metrics(ctx.name), ctx.path("curves.png"), title=ctx.name,
                                 keys=("loss", "kl_student_samples", "kl_teacher_samples", "ce", "lr"))
        artifacts = {"checkpoint": ctx.path("checkpoint")}
        if parts.cache is not None:
            artifacts["teacher_cache"] = ctx.path(CACHE_FILE)
        return StageResult(metrics=summary, artifacts=artifacts)

    def plan_step(self, ctx: StageContext, parts: Parts, step: int) -> StepPlan:
        """One optimizer step's batch: the data set's sequences, or (with probability lambda in
        on-policy mode) the student's own answers to their prompts; then the teacher's view of it."""
        c = self.config
        indices = epoch_order(len(parts.examples), ctx.seed, step, c.batch_size)
        chosen = [parts.examples[i] for i in indices]
        on_policy = c.mode == "on_policy" and random.Random(ctx.seed * 1_000_003 + step).random() < \
            c.on_policy.student_fraction
        pad_id = parts.student.tokenizer.pad_id
        if on_policy:
            rows, masks = self.student_samples(ctx, parts, chosen, step)
        else:
            rows, masks = [e.ids for e in chosen], [e.mask for e in chosen]
        batch = padded(rows, masks, pad_id)
        if parts.cache is not None:
            batch = parts.cache.attach(batch, indices, parts.examples)
        else:
            batch = with_teacher(batch, parts.teacher, c.teacher.top_k)
        completion = sum(sum(m) for m in masks) / len(masks)
        return StepPlan([batch], {"on_policy": float(on_policy), "completion_tokens": completion})

    def student_samples(self, ctx: StageContext, parts: Parts, chosen: list[Example],
                        step: int) -> tuple[list[list[int]], list[list[int]]]:
        """The student's answers to the prompts of ``chosen`` (seeded by the step), as rows and masks."""
        if parts.rollout is not parts.student:
            parts.rollout.update_weights(parts.student.hf_state_dict())
        sampling = self.config.on_policy.sampling.with_seed(ctx.seed * 1_000_003 + step * 7919)
        prompts = [e.prompt for e in chosen]
        groups = parts.rollout.generate(prompts, n=1, sampling=sampling)
        rows, masks = [], []
        for prompt, group in zip(prompts, groups, strict=True):
            tokens = group[0].token_ids or [parts.student.tokenizer.eos_id]  # an empty answer still ends
            rows.append(prompt + tokens)
            masks.append([0] * len(prompt) + [1] * len(tokens))
        return rows, masks


class SampleSource(StatelessCallback):
    """Splits the teacher-student KL (the loss's ``kl``) by whose tokens it was measured on:
    ``kl_student_samples`` (on-policy steps: the student's own samples) or ``kl_teacher_samples``."""

    name = "sample_source"

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        if "kl" in metrics:
            source = "student" if metrics.get("on_policy") else "teacher"
            metrics[f"kl_{source}_samples"] = metrics["kl"]


class StudentTokens:
    """``student_tokens``: target tokens trained on so far (the budget that compares methods)."""

    name = "student_tokens"

    def __init__(self) -> None:
        self.seen = 0

    def on_step(self, step: int, metrics: dict[str, float], engine: TrainEngine) -> None:
        self.seen += int(metrics.get("tokens", 0))
        metrics["student_tokens"] = self.seen

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seen = int(state.get("seen", 0))


def exposure_summary(history: list[dict[str, Any]]) -> dict[str, float]:
    """Mean teacher-student KL on student vs teacher samples over the run, and their gap (exposure bias)."""
    out: dict[str, float] = {}
    for source in ("student", "teacher"):
        values = [r[f"kl_{source}_samples"] for r in history if f"kl_{source}_samples" in r]
        if values:
            out[f"kl_{source}_samples"] = round(sum(values) / len(values), 4)
    if len(out) == 2:
        out["exposure_gap"] = round(out["kl_student_samples"] - out["kl_teacher_samples"], 4)
    if history and "student_tokens" in history[-1]:
        out["student_tokens"] = history[-1]["student_tokens"]
    return out
