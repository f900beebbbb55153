"""``filter``: run a chain of registered filters and transforms over document shards.

One shard per input file. Every document ends in exactly one place: ``kept/``, ``dropped/`` (with
``metadata.drop_reason``) or, for a malformed line, ``rejects/`` with its source and line number.
Per-reason counts go to the metrics and to ``report.json``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open, join, write_json
from llm_core.config import Config
from llm_core.data_io import RejectLog, list_sources
from llm_core.refs import FilterRef, ReaderRef, TransformRef, fold_options
from llm_core.stage import StageContext
from llm_core.types import Document, StageResult


class StepSpec(Config):
    """One step of the chain: exactly one of ``filter`` or ``transform``, with its options
    (``{filter = "length", options = {min_chars = 50}}``)."""

    filter: FilterRef | None = None
    transform: TransformRef | None = None

    fold_filter_options = model_validator(mode="before")(fold_options("filter"))
    fold_transform_options = model_validator(mode="before")(fold_options("transform"))

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        if (self.filter is None) == (self.transform is None):
            raise ValueError("a step names exactly one of 'filter' or 'transform'")
        return self

    @property
    def component(self) -> FilterRef | TransformRef:
        return self.filter or self.transform


class FilterStageConfig(Config):
    steps: list[StepSpec] = Field(min_length=1)
    reader: ReaderRef | None = Field(None, description="registered reader; None: by file suffix (auto)")
    batch_size: int = Field(256, ge=1, description="documents per batch for batch-capable filters")
    output_suffix: str = Field(".jsonl.gz", description="kept / dropped file suffix; sets compression")
    write_dropped: bool = Field(True, description="False discards dropped documents (counts are kept)")
    domain_key: str | None = Field(None, description="metadata field whose values get their own counts")

    fold_reader_options = model_validator(mode="before")(fold_options("reader", "reader_options"))


@dataclass(frozen=True)
class FilterShardTask:
    shard_id: str
    source: str
    reader: ReaderRef
    out_dir: str
    config: FilterStageConfig
    inputs: dict[str, str] | None = None  # the stage's inputs, for filters that read some (bind_inputs)


def filter_shard(task: FilterShardTask) -> dict[str, Any]:
    from llm_core.plugins import get_registries

    registries = get_registries()
    config = task.config
    steps = [(step.component.kind, _bound(step.component.build(registries), task.inputs)) for step in config.steps]
    reader = task.reader.build(registries)
    rejects = RejectLog()
    counts: Counter = Counter()
    domains: dict[str, Counter] = {}
    start = time.perf_counter()

    def count(doc: Document, outcome: str) -> None:
        counts[outcome] += 1
        if config.domain_key:
            domains.setdefault(str(doc.metadata.get(config.domain_key)), Counter())[outcome] += 1

    with contextlib.ExitStack() as stack:
        kept_out = stack.enter_context(atomic_open(
            join(task.out_dir, "kept", task.shard_id + config.output_suffix), "wt", encoding="utf-8",
            compression="infer"))
        dropped_out = stack.enter_context(atomic_open(
            join(task.out_dir, "dropped", task.shard_id + config.output_suffix), "wt", encoding="utf-8",
            compression="infer")) if config.write_dropped else None
        for batch in _batches(reader.read(task.source, rejects), config.batch_size):
            for kind, component in steps:
                if kind == "transforms":
                    batch = [component.transform(d) for d in batch]
                    continue
                batch_filter = getattr(component, "filter_batch", None)
                reasons = batch_filter(batch) if batch_filter else [component.filter(d) for d in batch]
                survivors = []
                for doc, reason in zip(batch, reasons, strict=True):
                    if reason is None:
                        survivors.append(doc)
                        continue
                    count(doc, reason)
                    if dropped_out is not None:
                        doc.metadata["drop_reason"] = reason
                        dropped_out.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")
                batch = survivors
                if not batch:
                    break
            for doc in batch:
                count(doc, "kept")
                kept_out.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")
    rejects.write(join(task.out_dir, "rejects", task.shard_id + ".jsonl"))
    kept = counts.pop("kept", 0)
    return {"source": task.source, "docs": kept + sum(counts.values()), "kept": kept, "dropped": dict(counts),
            "rejects": len(rejects), "seconds": round(time.perf_counter() - start, 4),
            "domains": {d: dict(c) for d, c in domains.items()}}


def _bound(component: Any, inputs: dict[str, str] | None) -> Any:
    bind = getattr(component, "bind_inputs", None)
    return bind(inputs or {}) if bind is not None else component


def _batches(docs: Iterator[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class FilterStage:
    """Applies the steps to every document of the ``documents`` input, one shard per file."""

    def __init__(self, config: FilterStageConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        sources = list_sources(ctx.input("documents"), self.config.reader.name if self.config.reader else "auto")
        tasks = [FilterShardTask(f"shard-{i:05d}", s.uri, self.config.reader or ReaderRef(name=s.reader),
                                 ctx.stage_dir, self.config, dict(ctx.inputs)) for i, s in enumerate(sources)]
        shards = ctx.run_shards(filter_shard, tasks, desc=f"{ctx.name}: filtering")
        report = summarize(shards)
        write_json(ctx.path("report.json"), {**report, "shards": shards})
        metrics = {k: report[k] for k in ("docs", "kept", "dropped", "rejects", "docs_per_second")}
        metrics["dropped_by_reason"] = report["dropped_by_reason"]
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"kept": ctx.path("kept"), "dropped": ctx.path("dropped"),
                                                       "report": ctx.path("report.json")})


def summarize(shards: list[dict[str, Any]]) -> dict[str, Any]:
    by_reason: Counter = Counter()
    domains: dict[str, Counter] = {}
    for shard in shards:
        by_reason.update(shard["dropped"])
        for domain, counts in shard.get("domains", {}).items():
            domains.setdefault(domain, Counter()).update(counts)
    docs = sum(s["docs"] for s in shards)
    seconds = sum(s["seconds"] for s in shards)
    return {"docs": docs, "kept": sum(s["kept"] for s in shards), "dropped": sum(by_reason.values()),
            "rejects": sum(s["rejects"] for s in shards), "dropped_by_reason": dict(by_reason.most_common()),
            "docs_per_second": round(docs / seconds, 1) if seconds else None,
            "domains": {d: dict(c) for d, c in domains.items()}}
