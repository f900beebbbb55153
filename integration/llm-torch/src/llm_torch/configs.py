"""Configs of the engine and the stages. Pure pydantic (no torch), so ``llmt describe`` stays fast."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llm_core.config import Config


class ModelShape(Config):
    """The shape of a model trained from scratch (HF ``LlamaConfig`` fields, shorter names)."""

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


class OptimizerOptions(Config):
    """AdamW and its learning-rate schedule (shared by the engine and every training stage)."""

    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null: no clipping")
    schedule: Literal["cosine", "constant", "wsd"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr / peak lr (cosine, wsd)")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of steps spent decaying")


class TorchEngineConfig(OptimizerOptions):
    """Options of ``engines.build("torch", ...)`` / ``rollout_engines.build("torch", ...)``."""

    checkpoint: str | None = Field(None, description="HF Llama folder (a stage's <stage>/checkpoint)")
    model: ModelShape | None = Field(None, description="shape of a fresh model (needs tokenizer)")
    tokenizer: str | None = Field(None, description="folder with tokenizer.json (default: the checkpoint's)")
    device: str = Field("cpu", description="cpu, cuda, cuda:1, or auto")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast matmuls to bfloat16")
    total_steps: int = Field(1000, ge=1, description="length of the lr schedule")
    seed: int = 0
    value_head: bool = Field(False, description="add a scalar head (reward model, critic)")
    trainable: bool = Field(True, description="false: frozen (reference / rollout-only); no optimizer")

    @model_validator(mode="after")
    def _one_source(self) -> TorchEngineConfig:
        if (self.checkpoint is None) == (self.model is None):
            raise ValueError("give exactly one of 'checkpoint' (a folder) or 'model' (a shape, with "
                             "'tokenizer')")
        if self.model is not None and self.tokenizer is None:
            raise ValueError("a fresh 'model' needs 'tokenizer' (a folder with tokenizer.json)")
        return self


class TrainingOptions(OptimizerOptions):
    """What every training stage shares: batch shape, length, precision, checkpointing."""

    seq_len: int = Field(256, ge=8, description="tokens per sequence (context length)")
    batch_size: int = Field(8, ge=1, description="sequences per optimizer step (global, all ranks)")
    micro_batch_size: int | None = Field(None, ge=1, description="per forward pass; default batch_size")
    steps: int = Field(100, ge=1, description="optimizer steps")
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "cpu"
    loss: str = Field("cross_entropy", description="a registered loss")
    loss_options: dict = Field(default_factory=dict)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(50, ge=1, description="steps between resumable training states")
    callbacks: list[str] = Field(default_factory=list, description="registered training callbacks")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (per process); default: torch's")
    processes: int = Field(1, ge=1, description="data-parallel processes under torchrun (DDP; gloo on CPU)")


class PretrainConfig(TrainingOptions):
    model: ModelShape = Field(default_factory=ModelShape)
    vocab_size: int = Field(8192, ge=300, description="size of the BPE tokenizer trained on the data")
    tokenizer_docs: int = Field(20000, ge=1, description="documents used to train the tokenizer")
    text_key: str = Field("text", description="JSONL field holding the text")


class MidtrainConfig(TrainingOptions):
    lr: float | None = Field(None, gt=0, description="default: a tenth of the previous stage's peak")
    replay_ratio: float = Field(0.1, ge=0, lt=1, description="share of sequences from the 'replay' input")
    text_key: str = "text"


class SftConfig(TrainingOptions):
    lr: float = Field(1e-4, gt=0)
    chat_template: Literal["chatml", "llama3", "checkpoint"] = Field(
        "checkpoint", description="template pinned into the output; 'checkpoint': keep the input's "
        "(chatml if it has none)")
    epochs: int | None = Field(None, ge=1, description="passes over the data; overrides 'steps'")
    steps: int = Field(100, ge=1)
    max_rejects_fraction: float = Field(0.5, ge=0, le=1, description="fail when more records are bad")
