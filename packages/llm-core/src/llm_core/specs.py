"""Typed specs that build engines and drive them: model shape, optimizer, sampling, engine choice.

Stages nest these in their configs (``optimizer = {lr = 1e-4}``, ``sampling = {temperature = 0.7}``,
``engine = {name = "torch", device = "cpu"}``) instead of flat prefix families of options; every
engine reads the same specs (``llm_core.engines`` holds the contract and builds engines from them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llm_core.refs import PrecisionRef, component_ref
from llm_core.schema import Config

Precision = Literal["fp32", "bf16"]
ScheduleName = Literal["constant", "cosine", "wsd"]


class ModelShape(Config):
    """The shape of a Llama-style model trained from scratch (HF ``LlamaConfig`` fields, shorter names)."""

    hidden_size: int = Field(256, ge=8)
    intermediate_size: int = Field(768, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    rope_theta: float = Field(10000.0, gt=0)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelShape:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must be a multiple of num_heads, and num_heads of num_kv_heads")
        return self


class OptimizerSpec(Config):
    """AdamW and its learning-rate schedule.

    ``lr`` is the peak; the schedule warms up linearly over ``warmup_steps``, then holds
    (``constant``), decays along a cosine to ``min_lr_ratio * lr`` (``cosine``), or holds and
    decays linearly over the last ``decay_fraction`` of the steps (``wsd``, warmup-stable-decay).
    Weight decay applies to matrices only (not norms or biases). ``grad_clip`` is the max global
    gradient norm (None: no clipping).
    """

    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW (beta1, beta2)")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null: no clipping")
    schedule: ScheduleName = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr / peak lr (cosine, wsd)")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of steps spent decaying")

    @model_validator(mode="after")
    def _betas_in_range(self) -> OptimizerSpec:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1), got {self.betas}")
        return self


class SamplingSpec(Config):
    """How a rollout engine samples. ``temperature = 0`` is greedy decoding.

    Filtering order: temperature, then top-k, then top-p (the nucleus is the smallest prefix of
    the ranking whose mass reaches ``top_p``). The log-probs reported for sampled tokens are always
    raw (temperature 1, before filtering), see ``llm_core.engines``.
    """

    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0: no top-k cut")
    stop_token_ids: tuple[int, ...] = Field((), description="stop tokens beyond the tokenizer's own")
    seed: int | None = Field(None, description="None: unseeded")

    def with_seed(self, seed: int | None) -> SamplingSpec:
        return self.model_copy(update={"seed": seed})


class EngineSpec(component_ref("engines")):
    """Which training engine, on which device, in which precision: ``engine = "torch"`` or
    ``engine = {name = "torch", device = "cuda", precision = "bf16", options = {...}}``.
    ``precision_recipe`` names a registered low-precision recipe (``"fp8_deepseek"``,
    ``{name = "qat", options = {bits = 4}}``) that the engine applies to its model's layers."""

    name: str = Field("torch", description="registered engine")
    device: str = Field("cpu", description="cpu, cuda, cuda:1, or auto")
    precision: Precision = Field("fp32", description="bf16: autocast matmuls to bfloat16")
    precision_recipe: PrecisionRef | None = Field(None, description="a registered precision recipe applied "
                                                  "to the model (FP8, MX, QAT); null: none")


class RolloutSpec(component_ref("rollout_engines")):
    """Which rollout engine generates: ``rollout = "torch"`` or ``rollout = {name = "vllm", options = {...}}``."""

    name: str = Field("torch", description="registered rollout engine")
    device: str = Field("cpu", description="cpu, cuda, cuda:1, or auto")
    precision: Precision = Field("fp32")


class DecontaminateSpec(component_ref("filters")):
    """A load-time gate on a training stage's data: a registered filter (e.g. llm-eval's
    ``contamination``, with its options) judges every record before it is used:
    ``decontaminate = {name = "contamination", options = {...}, action = "drop"}``. ``drop`` keeps
    flagged records in ``<stage>/contaminated.jsonl`` and trains on the rest; ``refuse`` fails the
    stage on the first one. Counts go to the stage's metrics and ``<stage>/decontamination.json``."""

    action: Literal["drop", "refuse"] = Field("drop", description="drop flagged records, or refuse to run")


class PromptSpec(Config):
    """How a problem becomes the prompt a model answers, for every stage that samples answers to
    prompts (RL, rejection sampling, evaluation): the checkpoint's chat template with an optional
    system prompt, or a plain-text ``prompt_format`` for a base model; ``response_prefix`` starts
    the answer (e.g. ``<think>``)."""

    system_prompt: str = ""
    prompt_format: str | None = Field(None, description="plain-text prompt such as 'Question: {prompt}\\n"
                                      "Solution:' for a base model; default: the chat template")
    response_prefix: str = Field("", description="text the answer starts with (e.g. '<think>')")

    @field_validator("prompt_format")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "{prompt}" not in value:
            raise ValueError("prompt_format must contain the placeholder {prompt}")
        return value

    def ids(self, tokenizer: Any, prompt: str) -> list[int]:
        """The prompt's token ids, ready for the model to continue."""
        from llm_core.chat import render_prompt

        return render_prompt(tokenizer, prompt, system_prompt=self.system_prompt,
                             response_prefix=self.response_prefix, prompt_format=self.prompt_format)
