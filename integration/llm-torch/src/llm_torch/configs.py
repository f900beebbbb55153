"""Configs of the training stages. Pure pydantic (no torch), so ``llmt describe`` stays fast.

Every training stage nests the shared specs of llm-core: ``engine`` (which engine, device,
precision), ``optimizer`` (AdamW and its schedule), ``loss`` and ``callbacks`` (registered
components by name). Stage-specific defaults live in small subclasses of those specs
(``SftOptimizer``: lr 1e-4), so that setting one field of a nested table keeps the others' defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llm_core.config import Config
from llm_core.refs import CallbackRef, ContextExtensionRef, LossRef
from llm_core.specs import DecontaminateSpec, EngineSpec, ModelShape, OptimizerSpec


class TrainingConfig(Config):
    """What every training stage shares: engine, optimizer, loss, batch shape, checkpointing."""

    engine: EngineSpec = Field(default_factory=EngineSpec, description="the training engine")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    loss: LossRef = Field(default_factory=lambda: LossRef(name="cross_entropy"), description="a registered loss")
    callbacks: list[CallbackRef] = Field(default_factory=list, description="registered training callbacks")
    seq_len: int = Field(256, ge=8, description="tokens per sequence (context length)")
    batch_size: int = Field(8, ge=1, description="sequences per optimizer step (global, all ranks)")
    micro_batch_size: int | None = Field(None, ge=1, description="per forward pass; default batch_size")
    steps: int = Field(100, ge=1, description="optimizer steps")
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(50, ge=1, description="steps between resumable training states")
    keep_resume_state: bool = Field(False, description="keep resume/ (weights + AdamW) after the stage "
                                    "completes; by default it is removed, the checkpoint stays")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (per process); default: torch's")
    processes: int = Field(1, ge=1, description="data-parallel processes under torchrun (DDP; gloo on CPU)")
    context_parallel: ContextExtensionRef | None = Field(
        None, description="shard every sequence across the processes with this registered attention "
        "(e.g. 'ring_attention' from llm-longctx) instead of splitting the batch; null: data parallel")
    curves: bool = Field(True, description="draw curves.png (loss over steps) when the stage ends")


class PretrainConfig(TrainingConfig):
    model: ModelShape = Field(default_factory=ModelShape)
    vocab_size: int = Field(8192, ge=300, description="size of the BPE tokenizer trained on the data")
    tokenizer_docs: int = Field(20000, ge=1, description="documents used to train the tokenizer")
    text_key: str = Field("text", description="JSONL field holding the text")


class MidtrainConfig(TrainingConfig):
    """``optimizer.lr`` left unset: a tenth of the previous stage's peak (from its ``llmt.json``)."""

    replay_ratio: float = Field(0.1, ge=0, lt=1, description="share of sequences from the 'replay' input")
    text_key: str = "text"


class SftOptimizer(OptimizerSpec):
    lr: float = Field(1e-4, gt=0, description="peak learning rate")


class SftConfig(TrainingConfig):
    optimizer: SftOptimizer = Field(default_factory=SftOptimizer)
    chat_template: Literal["chatml", "llama3", "checkpoint"] = Field(
        "checkpoint", description="template pinned into the output; 'checkpoint': keep the input's "
        "(chatml if it has none)")
    epochs: int | None = Field(None, ge=1, description="passes over the data; overrides 'steps'")
    max_rejects_fraction: float = Field(0.5, ge=0, le=1, description="fail when more records are bad")
    decontaminate: DecontaminateSpec | None = Field(None, description="a load-time gate: a registered filter "
                                                    "(e.g. contamination) drops or refuses flagged chats")
