"""Reference log-probs: computed once per data set and cached in the run folder, or live.

The DPO family needs, for every row, the reference model's log-probability of its completion
(summed over the completion's tokens). Computed once before training, they let the stage hold a
single model (the policy) while it trains. The cache lives at
``<run root>/reference_logps/<key>.json``, the key a fingerprint of the reference checkpoint (its
path and its files' names, sizes and modification times) and of the rows' token ids and masks, so
every stage of a run that trains on the same data from the same reference (DPO, IPO, KTO...) reads
it once computed, and any change to the checkpoint, the data, the tokenizer or the template makes
a new key. Written atomically: a killed run leaves a complete file or none.

A stage builds the frozen reference first (it also gives the tokenizer that encodes the data),
fills the cache with it, and in cached mode lets it go before building the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from llm_core.artifacts import exists, fingerprint, join, path_fingerprint, read_json, write_json
from llm_core.engines import TrainEngine
from llm_core.specs import EngineSpec
from llm_core.stage import StageContext
from llm_prefopt.pairs import Row, batch_of, rows_fingerprint

log = logging.getLogger("llmt.prefopt")
ReferenceMode = Literal["cached", "live"]
CACHE_FOLDER = "reference_logps"


def summed_logps(engine: TrainEngine, rows: Sequence[Row], batch_rows: int = 16) -> list[float]:
    """Each row's completion log-probability under ``engine``, summed over its tokens (no gradients)."""
    out: list[float] = []
    for start in range(0, len(rows), batch_rows):
        chunk = list(rows[start:start + batch_rows])
        out += engine.logprobs(batch_of(chunk)).sum(-1).tolist()  # 0 where a label is ignored
    return out


def cache_uri(ctx: StageContext, checkpoint: str, rows: Sequence[Row]) -> str:
    key = fingerprint({"checkpoint": checkpoint, "files": path_fingerprint(checkpoint),
                       "rows": rows_fingerprint(list(rows))})
    return join(ctx.store.root, CACHE_FOLDER, f"{key}.json")


class ReferenceLogps:
    """Where a stage's ``ref_logps`` come from: the run's cache (one model in memory while training)
    or a live frozen copy of the reference checkpoint (``mode = "live"``)."""

    def __init__(self, ctx: StageContext, spec: EngineSpec, checkpoint: str, mode: ReferenceMode = "cached",
                 batch_rows: int = 16):
        self.ctx, self.spec, self.checkpoint, self.mode, self.batch_rows = ctx, spec, checkpoint, mode, batch_rows
        self._frozen: TrainEngine | None = None

    @property
    def engine(self) -> TrainEngine:
        """The frozen reference model (built on first use)."""
        if self._frozen is None:
            self._frozen = self.ctx.train_engine(self.spec, checkpoint=self.checkpoint)
        return self._frozen

    def release(self) -> None:
        """Let the frozen model go (cached mode, once the cache is filled): training holds one model."""
        if self.mode == "cached":
            self._frozen = None

    def cached(self, rows: Sequence[Row]) -> list[float]:
        """Per-row values of a whole data set: read from the cache, or computed and cached now."""
        uri = cache_uri(self.ctx, self.checkpoint, rows)
        if exists(uri):
            cached = read_json(uri)
            if cached.get("rows") == len(rows):
                log.info("%s: reference log-probs of %d rows read from %s", self.ctx.name, len(rows), uri)
                return [float(v) for v in cached["logps"]]
        logps = summed_logps(self.engine, rows, self.batch_rows)
        write_json(uri, {"checkpoint": self.checkpoint, "rows": len(rows), "logps": logps})
        log.info("%s: reference log-probs of %d rows cached in %s", self.ctx.name, len(rows), uri)
        return logps

    def live(self, rows: Sequence[Row]) -> list[float]:
        """Per-row values computed now by the frozen reference."""
        return summed_logps(self.engine, rows, self.batch_rows)

    def table(self, rows: Sequence[Row]) -> list[float] | None:
        """The cached values in cached mode (computed before training), None in live mode."""
        return self.cached(rows) if self.mode == "cached" else None

    def lookup(self, table: list[float] | None, indices: Sequence[int], rows: Sequence[Row]) -> list[float]:
        """Values of the rows at ``indices``: from the table, or live."""
        if table is not None:
            return [table[i] for i in indices]
        return self.live(rows)
