"""Options of the ``nanotron`` engine (``engine = {name = "nanotron", options = {tp = 2}}``). Pure pydantic."""

from __future__ import annotations

from pydantic import Field

from llm_core.config import Config


class NanotronOptions(Config):
    """The parallel layout: ``tp * pp * dp`` worker processes (one GPU each on CUDA)."""

    tp: int = Field(1, ge=1, description="tensor parallel: attention heads, MLP and vocabulary split over tp ranks")
    pp: int = Field(1, ge=1, description="pipeline parallel: the layers split into pp stages")
    dp: int = Field(1, ge=1, description="data parallel: replicas, each on its share of a batch's rows")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per worker; default: the cores "
                                "divided by the workers (at least 1)")
    start_timeout_s: float = Field(600.0, gt=0, description="how long the workers may take to start")

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp
