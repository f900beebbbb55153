"""``synthetic_text``: a seeded corpus of prose and junk, for demos, tests and smoke runs.

Not meant to train on: it gives a pipeline something real to chew (good documents, short ones,
symbol soup, exact duplicates) with no download.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from pydantic import Field

from llm_core.artifacts import atomic_open
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult

_WORDS = (
    "the of and to in is was for on that with as by at from his her this which an are be it or "
    "had not were their but have they one all has been also its who more first after new two other "
    "river city school history music water energy market language science river valley garden "
    "ancient modern teacher student library network system model theory practice country island "
    "mountain forest season harvest journey letter memory village bridge council station museum"
).split()


class SyntheticTextConfig(Config):
    num_docs: int = Field(1000, ge=1)
    num_shards: int = Field(4, ge=1)
    min_words: int = Field(20, ge=1)
    max_words: int = Field(200, ge=1)
    junk_fraction: float = Field(0.2, ge=0, le=1, description="share of short or symbol-heavy documents")
    duplicate_fraction: float = Field(0.05, ge=0, le=1, description="share of exact copies of earlier docs")


@dataclass(frozen=True)
class _ShardTask:
    shard_id: str
    uri: str
    first: int
    count: int
    seed: int
    min_words: int
    max_words: int
    junk_fraction: float
    duplicate_fraction: float


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _document(rng: random.Random, task: _ShardTask) -> str:
    if rng.random() < task.junk_fraction:
        if rng.random() < 0.5:
            return _sentence(rng, rng.randint(1, 4))
        return " ".join(rng.choice(["#!", "$$", "{}", "***", "//", "<>", "&&"]) for _ in range(40))
    words = rng.randint(task.min_words, task.max_words)
    sentences = []
    while words > 0:
        n = min(words, rng.randint(6, 18))
        sentences.append(_sentence(rng, n))
        words -= n
    return " ".join(sentences)


def _write_shard(task: _ShardTask) -> dict[str, int]:
    rng = random.Random(task.seed)
    written: list[str] = []
    with atomic_open(task.uri, "wt", encoding="utf-8") as handle:
        for i in range(task.count):
            if written and rng.random() < task.duplicate_fraction:
                text = rng.choice(written)
            else:
                text = _document(rng, task)
            written.append(text)
            handle.write(json.dumps({"id": f"doc-{task.first + i:08d}", "text": text}) + "\n")
    return {"docs": task.count}


class SyntheticTextStage:
    """Writes ``num_docs`` seeded documents as JSONL shards under ``documents/``."""

    def __init__(self, config: SyntheticTextConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        shards = min(c.num_shards, c.num_docs)
        per_shard, extra = divmod(c.num_docs, shards)
        tasks, first = [], 0
        for shard in range(shards):
            count = per_shard + (1 if shard < extra else 0)
            shard_id = f"shard-{shard:05d}"
            tasks.append(_ShardTask(shard_id, ctx.path("documents", f"{shard_id}.jsonl"), first, count,
                                    ctx.seed * 1_000_003 + shard, c.min_words, max(c.min_words, c.max_words),
                                    c.junk_fraction, c.duplicate_fraction))
            first += count
        results = ctx.run_shards(_write_shard, tasks, desc=f"{ctx.name}: writing shards")
        metrics = {"docs": sum(r["docs"] for r in results), "shards": len(tasks)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"documents": ctx.path("documents")})
