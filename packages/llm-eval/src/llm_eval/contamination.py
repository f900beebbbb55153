"""Contamination checks in three places: a corpus filter, a report over any data set, a load-time gate.

* ``contamination`` (filter): drops documents that match an eval item, with reason
  ``contamination:<set>`` and the match (item, kind, score, span) in ``metadata.contamination``.
  Run it through core's sharded, resumable ``filter`` stage on the local or Ray executor, or name
  it in a training stage's ``decontaminate`` option (the load-time gate of ``llm_core.data_io``).
* ``contamination_index`` (stage): builds the index once and saves it (``<stage>/index``).
* ``contamination_report`` (stage): flags the records of any data set (JSONL, Parquet, saved HF
  dataset), one shard per file, and writes ``flagged.jsonl``, ``report.json`` and ``report.md``.

The index comes from a saved folder (``index``, or ``index_input``: a stage input holding one) or is
built from ``eval_sets`` on first use, once per process.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open, fingerprint, write_json
from llm_core.config import Config
from llm_core.data_io import RejectLog, iter_records, list_sources, record_text
from llm_core.stage import StageContext
from llm_core.types import Document, StageResult
from llm_eval.eval_sets import EvalSetSpec, load_eval_items
from llm_eval.index import ContaminationIndex, MatchRule


class ContaminationConfig(Config):
    """Where the eval items come from, and how a document is judged against them."""

    eval_sets: list[EvalSetSpec] = Field(default_factory=list, description="sets to index (builtin, uri or input)")
    index: str | None = Field(None, description="a saved index folder (contamination_index stage)")
    index_input: str | None = Field(None, description="a stage input holding a saved index folder")
    n: int = Field(13, ge=4, le=64, description="n-gram size for long items (>= 2n + 1 tokens)")
    min_n: int = Field(8, ge=3, description="anchor n-gram size for short items")
    min_tokens: int = Field(8, ge=3, description="items with fewer normalized tokens are not indexed")
    overlap: float = Field(0.8, gt=0, le=1, description="share of the item's tokens the aligned window must hold")
    ngram_min_tokens: int = Field(40, ge=1, description="items this long are flagged by any shared n-gram (the "
                                  "classic rule); shorter ones must be there whole, with their numbers")

    @model_validator(mode="after")
    def _one_source(self) -> ContaminationConfig:
        given = [bool(self.eval_sets), self.index is not None, self.index_input is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'eval_sets', 'index' or 'index_input'")
        if self.min_n > self.n:
            raise ValueError(f"min_n ({self.min_n}) must not exceed n ({self.n})")
        return self

    @property
    def rule(self) -> MatchRule:
        return MatchRule(n=self.n, min_n=self.min_n, min_tokens=self.min_tokens, overlap=self.overlap,
                         ngram_min_tokens=self.ngram_min_tokens)


_INDEXES: dict[str, ContaminationIndex] = {}  # built or loaded once per process


def index_for(config: ContaminationConfig, inputs: Mapping[str, str] | None = None) -> ContaminationIndex:
    """The index a config names: loaded from its folder, or built from its eval sets (cached)."""
    used = {spec.input for spec in config.eval_sets if spec.input} | {config.index_input} - {None}
    inputs = {k: v for k, v in (inputs or {}).items() if k in used}
    key = fingerprint({"config": config.model_dump(mode="json"), "inputs": inputs})
    if key not in _INDEXES:
        if config.index is not None or config.index_input is not None:
            uri = config.index if config.index is not None else _input(inputs, config.index_input)
            _INDEXES[key] = ContaminationIndex.load(uri)
        else:
            items = [item for spec in config.eval_sets for item in load_eval_items(spec, inputs)]
            _INDEXES[key] = ContaminationIndex.build(items, config.rule)
    return _INDEXES[key]


def _input(inputs: Mapping[str, str], name: str) -> str:
    if name not in inputs:
        raise ValueError(f"index_input {name!r} is not an input of this stage (inputs: {sorted(inputs)})")
    return inputs[name]


class ContaminationFilter:
    """Drops documents that match an eval item; the match goes to ``metadata.contamination``."""

    def __init__(self, config: ContaminationConfig, inputs: Mapping[str, str] | None = None):
        self.config, self.inputs = config, dict(inputs or {})

    def bind_inputs(self, inputs: Mapping[str, str]) -> ContaminationFilter:
        return ContaminationFilter(self.config, inputs)

    def filter(self, doc: Document) -> str | None:
        return self.filter_batch([doc])[0]

    def filter_batch(self, docs: Sequence[Document]) -> list[str | None]:
        matches = index_for(self.config, self.inputs).match_texts([d.text for d in docs])
        reasons: list[str | None] = []
        for doc, match in zip(docs, matches, strict=True):
            if match is not None:
                doc.metadata["contamination"] = match.to_dict()
            reasons.append(None if match is None else match.reason)
        return reasons


# -- stages -----------------------------------------------------------------------------------------


class ContaminationIndexConfig(Config):
    eval_sets: list[EvalSetSpec] = Field(min_length=1)
    n: int = Field(13, ge=4, le=64)
    min_n: int = Field(8, ge=3)
    min_tokens: int = Field(8, ge=3)
    overlap: float = Field(0.8, gt=0, le=1)
    ngram_min_tokens: int = Field(40, ge=1)


class ContaminationIndexStage:
    """Builds the index over the eval sets once and saves it under ``<stage>/index``."""

    def __init__(self, config: ContaminationIndexConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        rule = MatchRule(n=c.n, min_n=c.min_n, min_tokens=c.min_tokens, overlap=c.overlap,
                         ngram_min_tokens=c.ngram_min_tokens)
        items = [item for spec in c.eval_sets
                 for item in load_eval_items(spec, ctx.inputs, ctx.path(f"rejects-{spec.label}.jsonl"))]
        index = ContaminationIndex.build(items, rule)
        index.save(ctx.path("index"))
        summary = index.summary()
        ctx.log_metrics({"items": summary["items"], "vocab": summary["vocab"]})
        return StageResult(metrics={"items": summary["items"], **{f"items/{k}": v for k, v in
                                                                   summary["items_by_set"].items()}},
                           artifacts={"index": ctx.path("index")})


class ContaminationReportConfig(ContaminationConfig):
    reader: str = Field("auto", description="reader of the documents (auto: by file suffix)")
    split: str | None = Field(None, description="split of a saved HF DatasetDict")
    batch_size: int = Field(512, ge=1)
    examples: int = Field(20, ge=0, description="flagged examples shown in report.md")


@dataclass(frozen=True)
class ReportShard:
    shard_id: str
    source: Any
    out_uri: str
    config: ContaminationReportConfig
    inputs: dict[str, str]


def report_shard(task: ReportShard) -> dict[str, Any]:
    start = time.perf_counter()
    rejects = RejectLog()
    index = index_for(task.config, task.inputs)
    flagged, total = [], 0
    batch: list[tuple[str, int, dict[str, Any]]] = []

    def judge() -> None:
        for (where, line, record), match in zip(batch, index.match_texts([record_text(r) for _, _, r in batch]),
                                                strict=True):
            if match is not None:
                flagged.append({"source": where, "line": line, "id": record.get("id"), **match.to_dict()})
        batch.clear()

    for item in iter_records(task.source, rejects, task.config.split):
        total += 1
        batch.append(item)
        if len(batch) >= task.config.batch_size:
            judge()
    judge()
    with atomic_open(task.out_uri, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(f, ensure_ascii=False) + "\n" for f in flagged)
    return {"source": task.source.uri, "records": total, "flagged": len(flagged), "rejects": len(rejects.records),
            "by_set": dict(Counter(f["set"] for f in flagged)), "by_kind": dict(Counter(f["kind"] for f in flagged)),
            "seconds": round(time.perf_counter() - start, 3)}


class ContaminationReportStage:
    """Flags the records of the ``documents`` input that match an eval item; one shard per file."""

    def __init__(self, config: ContaminationReportConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        sources = list_sources(ctx.input("documents"), self.config.reader)
        tasks = [ReportShard(f"shard-{i:05d}", s, ctx.path("flagged", f"shard-{i:05d}.jsonl"), self.config,
                             dict(ctx.inputs)) for i, s in enumerate(sources)]
        shards = ctx.run_shards(report_shard, tasks, desc=f"{ctx.name}: contamination")
        by_set: Counter = Counter()
        by_kind: Counter = Counter()
        for shard in shards:
            by_set.update(shard["by_set"])
            by_kind.update(shard["by_kind"])
        records = sum(s["records"] for s in shards)
        flagged = sum(s["flagged"] for s in shards)
        index = index_for(self.config, ctx.inputs).summary()
        report = {"records": records, "flagged": flagged, "flagged_fraction": flagged / records if records else 0.0,
                  "by_set": dict(by_set), "by_kind": dict(by_kind), "index": index, "shards": shards}
        write_json(ctx.path("report.json"), report)
        with atomic_open(ctx.path("report.md"), "wt", encoding="utf-8") as handle:
            handle.write(render_report(report, [t.out_uri for t in tasks], self.config.examples))
        metrics = {"records": records, "flagged": flagged, **{f"flagged/{k}": v for k, v in by_set.items()}}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"report": ctx.path("report.json"),
                                                       "flagged": ctx.path("flagged")})


def render_report(report: dict[str, Any], flagged_uris: list[str], examples: int) -> str:
    import fsspec

    index = report["index"]
    lines = [f"# Contamination report: {report['flagged']} of {report['records']} records flagged", "",
             f"Index: {index['items']} items ({', '.join(f'{k} {v}' for k, v in index['items_by_set'].items())}), "
             f"normalization `{index['normalization']}`, rule {index['rule']}.", "",
             "| eval set | flagged records |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(report["by_set"].items())] or ["| (none) | 0 |"]
    shown = []
    for uri in flagged_uris:
        with fsspec.open(uri, "rt", encoding="utf-8") as handle:
            shown += [json.loads(line) for line in handle][: examples - len(shown)]
        if len(shown) >= examples:
            break
    if shown:
        lines += ["", "| record | eval item | kind | score | matched span |", "|---|---|---|---|---|"]
        lines += [f"| {f['source'].rsplit('/', 1)[-1]}:{f['line']} | {f['set']}/{f['item_id']} | {f['kind']} | "
                  f"{f['score']:.2f} | {f['excerpt'][:80].replace('|', '/').replace(chr(10), ' ')} |" for f in shown]
    return "\n".join(lines) + "\n"
