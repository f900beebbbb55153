"""``near_duplicate_text``: a corpus of real sentences with near-duplicates injected at known exact
Jaccard similarities, plus its ground truth, for demos, accuracy checks and scale tests."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_dedup.evaluation import gensim_sentences, near_duplicate_corpus


class NearDuplicateTextConfig(Config):
    num_docs: int = Field(2000, ge=2)
    num_shards: int = Field(4, ge=1)
    duplicate_fraction: float = Field(0.1, ge=0, le=0.5, description="share of documents that are "
                                      "near-duplicates of another one")
    min_similarity: float = Field(0.5, ge=0, le=1, description="lowest exact Jaccard of an injected pair")
    max_similarity: float = Field(1.0, ge=0, le=1, description="highest exact Jaccard of an injected pair")
    min_words: int = Field(100, ge=1)
    max_words: int = Field(400, ge=1)
    max_copies: int = Field(1, ge=1, description="near-duplicates per original, at most (1: every similarity "
                            "in the corpus is a controlled one; more: copies of one original side by side)")
    sentences: str = Field("gensim", description="'gensim' (its bundled news and Wikipedia samples; needs "
                           "gensim) or a text file with one sentence per line")

    def required_modules(self) -> dict[str, str]:
        return {"gensim": "pip install gensim (or point 'sentences' at a text file)"} \
            if self.sentences == "gensim" else {}

    @model_validator(mode="after")
    def _ranges(self) -> NearDuplicateTextConfig:
        if self.min_similarity > self.max_similarity or self.min_words > self.max_words:
            raise ValueError("min_similarity / min_words must not exceed max_similarity / max_words")
        return self


class NearDuplicateTextStage:
    """Writes ``documents/shard-*.jsonl`` and ``truth.jsonl`` (original, near-duplicate, jaccard)."""

    def __init__(self, config: NearDuplicateTextConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        corpus = near_duplicate_corpus(self._sentences(), c.num_docs, c.duplicate_fraction,
                                       (c.min_similarity, c.max_similarity), c.min_words, c.max_words,
                                       seed=ctx.seed, max_copies=c.max_copies)
        num_shards = min(c.num_shards, c.num_docs)
        per_shard = -(-c.num_docs // num_shards)
        for shard in range(num_shards):
            rows = range(shard * per_shard, min(c.num_docs, (shard + 1) * per_shard))
            with atomic_open(ctx.path("documents", f"shard-{shard:05d}.jsonl"), "wt", encoding="utf-8") as out:
                out.writelines(json.dumps({"id": f"doc-{i:08d}", "text": corpus.texts[i]}) + "\n" for i in rows)
        with atomic_open(ctx.path("truth.jsonl"), "wt", encoding="utf-8") as out:
            out.writelines(json.dumps({"original": f"doc-{a:08d}", "near_duplicate": f"doc-{b:08d}",
                                       "jaccard": round(s, 6)}) + "\n" for a, b, s in corpus.pairs)
        metrics = {"docs": c.num_docs, "near_duplicates": len(corpus.pairs),
                   "pairs_at_or_above_0.8": sum(s >= 0.8 for _, _, s in corpus.pairs)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"documents": ctx.path("documents"),
                                                       "truth": ctx.path("truth.jsonl")})

    def _sentences(self) -> list[str]:
        if self.config.sentences == "gensim":
            try:
                return gensim_sentences()
            except ImportError as exc:
                raise ImportError("sentences = \"gensim\" needs gensim (pip install gensim), or point "
                                  "sentences at a text file with one sentence per line") from exc
        lines = [line.strip() for line in Path(self.config.sentences).read_text(encoding="utf-8").splitlines()]
        found = [line for line in lines if line]
        if not found:
            raise ValueError(f"{self.config.sentences}: no sentences (expected one sentence per line)")
        return found
