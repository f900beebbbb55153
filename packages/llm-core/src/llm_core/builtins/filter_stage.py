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

from fsspec.core import url_to_fs
from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open, join, write_json
from llm_core.builtins.jsonl import write_records
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import Document, StageResult

READER_BY_SUFFIX = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
                    ".txt": "text", ".arrow": "hf_dataset"}
COMPRESSION_SUFFIXES = (".gz", ".zst", ".bz2", ".xz")
BOOKKEEPING = {"manifest.json", "metrics.jsonl", "report.json", "run.json"}  # never data


class StepSpec(Config):
    """One step of the chain: exactly one of ``filter`` or ``transform``, with its options."""

    filter: str | None = None
    transform: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        if (self.filter is None) == (self.transform is None):
            raise ValueError("a step names exactly one of 'filter' or 'transform'")
        return self

    @property
    def component(self) -> tuple[str, str]:
        return ("filters", self.filter) if self.filter else ("transforms", self.transform or "")


class FilterStageConfig(Config):
    steps: list[StepSpec] = Field(min_length=1)
    reader: str = Field("auto", description="registered reader, or auto (by file suffix)")
    reader_options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(256, ge=1, description="documents per batch for batch-capable filters")
    output_suffix: str = Field(".jsonl.gz", description="kept / dropped file suffix; sets compression")
    write_dropped: bool = Field(True, description="False discards dropped documents (counts are kept)")
    domain_key: str | None = Field(None, description="metadata field whose values get their own counts")


@dataclass(frozen=True)
class FilterShardTask:
    shard_id: str
    source: str
    out_dir: str
    steps: tuple[tuple[str, str, dict[str, Any]], ...]
    reader: str
    reader_options: dict[str, Any]
    batch_size: int
    output_suffix: str
    write_dropped: bool
    domain_key: str | None


def list_input_files(uri: str) -> list[str]:
    """The data files of an input: the file itself, or every data file below a folder."""
    fs, path = url_to_fs(uri)
    if not fs.isdir(path):
        return [uri]
    protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    files = []
    for found in sorted(fs.find(path)):
        name = found.rsplit("/", 1)[-1]
        if name.startswith(("_", ".")) or "/_" in found[len(path):] or ".tmp-" in name or name in BOOKKEEPING:
            continue  # markers, manifests' folders, temporaries
        if reader_for(name, "auto", strict=False):
            files.append(protocol + found if protocol and not found.startswith(protocol) else found)
    return files


def reader_for(name: str, reader: str, strict: bool = True) -> str | None:
    if reader != "auto":
        return reader
    stem = name
    for suffix in COMPRESSION_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    for suffix, kind in READER_BY_SUFFIX.items():
        if stem.endswith(suffix):
            return kind
    if strict:
        raise ValueError(f"{name}: cannot tell the format from the name; set reader = \"jsonl\" (or another)")
    return None


def filter_shard(task: FilterShardTask) -> dict[str, Any]:
    from llm_core.plugins import get_registries

    registries = get_registries()
    steps = [(kind, registries[kind].build(name, options)) for kind, name, options in task.steps]
    reader = registries.readers.build(task.reader, task.reader_options)
    rejects: list[dict[str, Any]] = []
    counts: Counter = Counter()
    domains: dict[str, Counter] = {}
    start = time.perf_counter()

    def count(doc: Document, outcome: str) -> None:
        counts[outcome] += 1
        if task.domain_key:
            domains.setdefault(str(doc.metadata.get(task.domain_key)), Counter())[outcome] += 1

    with contextlib.ExitStack() as stack:
        kept_out = stack.enter_context(atomic_open(
            join(task.out_dir, "kept", task.shard_id + task.output_suffix), "wt", encoding="utf-8",
            compression="infer"))
        dropped_out = stack.enter_context(atomic_open(
            join(task.out_dir, "dropped", task.shard_id + task.output_suffix), "wt", encoding="utf-8",
            compression="infer")) if task.write_dropped else None
        for batch in _batches(reader.read(task.source, rejects.append), task.batch_size):
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
    if rejects:
        write_records(join(task.out_dir, "rejects", task.shard_id + ".jsonl"), rejects)
    kept = counts.pop("kept", 0)
    return {"source": task.source, "docs": kept + sum(counts.values()), "kept": kept, "dropped": dict(counts),
            "rejects": len(rejects), "seconds": round(time.perf_counter() - start, 4),
            "domains": {d: dict(c) for d, c in domains.items()}}


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

    def __init__(self, steps: list[StepSpec], reader: str, reader_options: dict[str, Any], batch_size: int,
                 output_suffix: str, write_dropped: bool, domain_key: str | None):
        self.steps = tuple((s.component[0], s.component[1], dict(s.options)) for s in steps)
        self.reader, self.reader_options = reader, reader_options
        self.batch_size, self.output_suffix = batch_size, output_suffix
        self.write_dropped, self.domain_key = write_dropped, domain_key

    def run(self, ctx: StageContext) -> StageResult:
        files = list_input_files(ctx.input("documents"))
        if not files:
            raise FileNotFoundError(f"stage {ctx.name!r}: no data files under {ctx.input('documents')}")
        tasks = [FilterShardTask(f"shard-{i:05d}", f, ctx.stage_dir, self.steps,
                                 reader_for(f.rsplit("/", 1)[-1], self.reader), self.reader_options,
                                 self.batch_size, self.output_suffix, self.write_dropped, self.domain_key)
                 for i, f in enumerate(files)]
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
