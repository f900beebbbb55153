"""The option groups of the distillation stages (``distill``, ``teacher_generate``, ``distill_report``).

In a recipe each group is one table: ``teacher = {top_k = 32, cache = true}``,
``on_policy = {student_fraction = 0.5}``, ``sampling = {temperature = 1.0, max_new_tokens = 64}``,
``prompt = {response_prefix = "<think>"}``.
"""

from __future__ import annotations

from pydantic import Field

from llm_core.config import Config
from llm_core.specs import EngineSpec, OptimizerSpec, SamplingSpec, ScheduleName


class TeacherSpec(Config):
    """The frozen teacher: its engine and the form in which its distribution reaches the loss."""

    engine: EngineSpec = Field(default_factory=EngineSpec, description="the teacher's engine")
    top_k: int | None = Field(None, ge=1, description="keep the k largest log-probs per position and the "
                              "remaining mass; null: the whole vocabulary (exact)")
    cache: bool = Field(False, description="soft mode: score the data set once and keep the top-k in the "
                        "run folder (teacher_topk.npz), instead of a teacher forward pass every step")


class DistillSampling(SamplingSpec):
    max_new_tokens: int = Field(64, ge=1)


class PromptSpec(Config):
    """How a problem becomes the prompt the model answers (the checkpoint's chat template renders it)."""

    system_prompt: str = ""
    response_prefix: str = Field("", description="text the answer starts with (e.g. '<think>')")


class OnPolicySpec(Config):
    """GKD's data mix: each step trains on the student's own samples with probability
    ``student_fraction`` (GKD's lambda), else on the data set's (the teacher's) sequences."""

    student_fraction: float = Field(0.5, ge=0, le=1, description="GKD's lambda")
    sampling: DistillSampling = Field(default_factory=DistillSampling)


class DistillOptimizer(OptimizerSpec):
    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    schedule: ScheduleName = "cosine"


class ExposureProbe(Config):
    """Teacher-student KL on the student's own samples against the teacher's samples of the same prompts."""

    prompts: int = Field(100, ge=1, description="held-out prompts probed")
    sampling: DistillSampling = Field(default_factory=lambda: DistillSampling(temperature=1.0))

