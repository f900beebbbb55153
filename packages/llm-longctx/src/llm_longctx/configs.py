"""Configs of ring attention and of llm-longctx's stages: pure pydantic, no torch, so that loading
the plugin and ``llmt describe`` stay fast. (The RoPE scalings' configs are in ``rope.py``, which
imports torch only inside its functions.)"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llm_core.config import Config
from llm_core.refs import ContextExtensionRef
from llm_core.specs import EngineSpec

Layout = Literal["zigzag", "striped", "contiguous"]
Kernel = Literal["auto", "flash", "math"]


class RingAttentionConfig(Config):
    """How the sequence is cut across processes, and which block kernel computes attention."""

    layout: Layout = Field("zigzag", description="zigzag or striped (load-balanced), or contiguous (naive)")
    kernel: Kernel = Field("auto", description="auto: PyTorch's CPU flash kernel on CPU, matmuls elsewhere")


class LongDocumentsConfig(Config):
    """Sizes of the three splits of ``long_documents`` (statements: ``<name> is <value> .``, about
    seven tokens each with a 1,024-token BPE)."""

    names: int = Field(1000, ge=10, description="pseudo-word names to draw from")
    value_digits: int = Field(3, ge=1, le=6, description="digits of a value (a miss costs ln 10 ** digits)")
    train_documents: int = Field(4000, ge=1)
    train_statements: tuple[int, int] = Field((14, 36), description="statements per short document (range)")
    long_documents: int = Field(200, ge=0, description="long documents for continued training")
    heldout_documents: int = Field(16, ge=1, description="long held-out documents for evaluation")
    long_statements: int = Field(400, ge=2, description="statements per long document")


class ExtendContextConfig(Config):
    """Give a plain-RoPE checkpoint a RoPE scaling and a longer context (``config.json`` only)."""

    rope: ContextExtensionRef = Field(description="a registered RoPE scaling: linear, ntk, dynamic, yarn, llama3")
    max_seq_len: int = Field(ge=8, description="context length after the extension (max_position_embeddings)")


class PositionPerplexityConfig(Config):
    """Perplexity of checkpoints on long documents, by position (each input but ``documents`` is a
    checkpoint, reported under its input name)."""

    engine: EngineSpec = Field(default_factory=EngineSpec, description="the engine that scores")
    seq_len: int = Field(2048, ge=8, description="tokens scored per document (its first ones)")
    buckets: list[int] = Field([0, 256, 512, 1024, 2048], description="bucket edges over the predicted position")
    trained_length: int | None = Field(None, ge=1, description="drawn as a line on the plot (the pretraining length)")
    max_documents: int | None = Field(None, ge=1, description="score the first N long enough documents")
    batch_size: int = Field(4, ge=1)
    window: int = Field(64, ge=1, description="positions averaged per point of the plot")
    text_key: str = "text"
    threads: int | None = Field(None, ge=1, description="torch CPU threads")

    @model_validator(mode="after")
    def _buckets_increase(self) -> PositionPerplexityConfig:
        edges = self.buckets
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or edges[-1] > self.seq_len:
            raise ValueError(f"buckets must be at least two increasing edges within seq_len ({self.seq_len}), "
                             f"got {edges}")
        return self
