"""Configs of llm-longctx's components that do not live beside light code: pure pydantic, no torch,
so that loading the plugin and ``llmt describe`` stay fast. (The RoPE scalings' configs are in
``rope.py``, which imports torch only inside its functions.)"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llm_core.config import Config

Layout = Literal["zigzag", "striped", "contiguous"]
Kernel = Literal["auto", "flash", "math"]


class RingAttentionConfig(Config):
    """How the sequence is cut across processes, and which block kernel computes attention."""

    layout: Layout = Field("zigzag", description="zigzag or striped (load-balanced), or contiguous (naive)")
    kernel: Kernel = Field("auto", description="auto: PyTorch's CPU flash kernel on CPU, matmuls elsewhere")
