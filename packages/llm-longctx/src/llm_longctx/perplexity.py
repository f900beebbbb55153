"""``position_perplexity``: perplexity of checkpoints on long documents, by position.

Each document's first ``seq_len + 1`` tokens are scored teacher-forced; the log-probability of
token t + 1 given tokens 0..t counts at position t. A bucket's perplexity is exp of the mean
negative log-likelihood over every document's positions in it (all documents the same length, so
each position weighs the same). Documents shorter than ``seq_len + 1`` tokens are not scored and
are counted (``short_documents``); malformed records go to ``rejects.jsonl``.

Writes ``perplexity.md`` (one row per checkpoint, one column per bucket), ``perplexity.json``
(the same, plus the windowed curve) and ``perplexity.png`` (perplexity against position, one line
per checkpoint).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from llm_core.artifacts import atomic_open, write_json
from llm_core.data_io import load_records
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import StageResult
from llm_longctx.configs import PositionPerplexityConfig

log = logging.getLogger("llmt")


def bucket_label(low: int, high: int) -> str:
    return f"{low}-{high}"


class PositionPerplexityStage:
    def __init__(self, config: PositionPerplexityConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        checkpoints = {name: uri for name, uri in ctx.inputs.items() if name != "documents"}
        if not checkpoints:
            raise ValueError(f"stage {ctx.name!r}: give it checkpoints to score as inputs besides 'documents' "
                             "(inputs = { documents = ..., base = \"pretrain/checkpoint\" })")
        texts = load_records(ctx.input("documents"), lambda record: _text(record, c.text_key),
                             rejects_uri=ctx.path("rejects.jsonl"), what="documents")
        with limit_threads(c.threads):
            results = {name: self.score(ctx, uri, texts) for name, uri in checkpoints.items()}
        write_json(ctx.path("perplexity.json"), results)
        with atomic_open(ctx.path("perplexity.md"), "w", encoding="utf-8") as handle:
            handle.write(markdown_table(results, c.buckets))
        plot_curves(results, ctx.path("perplexity.png"), c.trained_length)
        metrics = {f"{name}/{label}": ppl for name, r in results.items() for label, ppl in r["buckets"].items()}
        return StageResult(metrics=metrics, artifacts={"table": ctx.path("perplexity.md"),
                                                       "plot": ctx.path("perplexity.png")})

    def score(self, ctx: StageContext, checkpoint: str, texts: list[str]) -> dict[str, Any]:
        """Bucket perplexities and the windowed curve of one checkpoint."""
        import torch

        c = self.config
        engine = ctx.train_engine(c.engine, checkpoint=checkpoint, max_seq_len=c.seq_len)  # frozen: no optimizer
        rows = [ids[: c.seq_len + 1] for ids in (engine.tokenizer.encode(t) for t in texts) if len(ids) > c.seq_len]
        rows = rows[: c.max_documents]
        if not rows:
            raise ValueError(f"stage {ctx.name!r}: no document has the {c.seq_len + 1} tokens needed to score "
                             f"{c.seq_len} positions; give longer documents or lower seq_len")
        nll = torch.zeros(c.seq_len, dtype=torch.float64)
        for start in range(0, len(rows), c.batch_size):
            logprobs = engine.logprobs({"input_ids": rows[start:start + c.batch_size]})
            nll -= logprobs[:, : c.seq_len].double().sum(0).cpu()  # position t predicts token t + 1
        nll /= len(rows)
        buckets = {bucket_label(lo, hi): math.exp(float(nll[lo:hi].mean())) for lo, hi in
                   zip(c.buckets, c.buckets[1:], strict=False)}
        curve = [(start + c.window / 2, math.exp(float(nll[start:start + c.window].mean())))
                 for start in range(0, c.seq_len, c.window)]
        ctx.log_metrics({"checkpoint": checkpoint, "documents": len(rows), "short_documents": len(texts) - len(rows),
                         **{f"ppl_{k}": v for k, v in buckets.items()}})
        return {"checkpoint": checkpoint, "documents": len(rows), "short_documents": len(texts) - len(rows),
                "buckets": buckets, "curve": curve}


def _text(record: dict[str, Any], key: str) -> str:
    text = record.get(key)
    if not isinstance(text, str) or not text:
        raise ValueError(f"no text under {key!r} (set text_key)")
    return text


def markdown_table(results: dict[str, dict[str, Any]], edges: list[int]) -> str:
    labels = [bucket_label(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]
    lines = ["| checkpoint | " + " | ".join(f"ppl @ {label}" for label in labels) + " | documents |",
             "|---|" + "---|" * (len(labels) + 1)]
    for name, r in results.items():
        cells = " | ".join(f"{r['buckets'][label]:.2f}" for label in labels)
        lines.append(f"| {name} | {cells} | {r['documents']} |")
    return "\n".join(lines) + "\n"


def plot_curves(results: dict[str, dict[str, Any]], out_uri: str, trained_length: int | None) -> bool:
    """Perplexity against position, one line per checkpoint (log scale); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("perplexity.png not drawn: matplotlib is not installed")
        return False
    import io

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in results.items():
        ax.plot(*zip(*r["curve"], strict=True), label=name, linewidth=1.5)
    if trained_length:
        ax.axvline(trained_length, color="grey", linestyle="--", linewidth=1, label="trained length")
    ax.set_yscale("log")
    ax.set_xlabel("position (tokens)")
    ax.set_ylabel("perplexity")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    with atomic_open(out_uri, "wb") as handle:
        handle.write(buffer.getvalue())
    return True

