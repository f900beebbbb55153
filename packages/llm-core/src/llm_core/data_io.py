"""The one I/O layer for a stage's input data: which files an input holds, and records with a reject log.

* ``list_sources(uri)``: the data sources of an input (a file, a folder of data files, or a folder
  saved by Hugging Face ``datasets``), each with the registered reader that reads it.
* ``RejectLog``: malformed records with file, line and reason; written to a rejects file, and a
  stage fails up front when more than a maximum fraction of its records is bad.
* ``load_records(uri, parse, ...)``: every JSON-object record of an input (JSONL, Parquet or an HF
  dataset folder) parsed by the stage's own ``parse``; what it cannot parse is rejected, never
  dropped silently.
* ``load_problems(uri, ...)``: prompts with their known answers (``{"id", "prompt", "reference"}``
  records) as ``Problem``s, the one reader of every stage that samples answers to prompts.
* ``RecordGate``: a load-time gate (``load_records(..., gate=...)``): a registered filter (such as
  llm-eval's ``contamination``) judges every record's text before it is parsed; records it flags
  are dropped (and written to ``<stage>/contaminated.jsonl`` with the reason) or, with action
  ``refuse``, fail the stage. Stages get one from ``ctx.record_gate(config.decontaminate)``.

The token-folder format lives in ``llm_core.tokens``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import fsspec
from fsspec.core import url_to_fs

from llm_core.artifacts import exists, join, write_json
from llm_core.protocols import Filter
from llm_core.types import Document, Problem

log = logging.getLogger("llmt")
T = TypeVar("T")

READER_BY_SUFFIX = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
                    ".txt": "text", ".arrow": "hf_dataset"}
COMPRESSION_SUFFIXES = (".gz", ".zst", ".bz2", ".xz")
BOOKKEEPING = {"manifest.json", "metrics.jsonl", "report.json", "run.json", "meta.json"}  # never data
HF_DATASET_MARKERS = ("dataset_info.json", "state.json")  # a Dataset.save_to_disk folder
HF_DATASET_DICT_MARKER = "dataset_dict.json"  # a DatasetDict.save_to_disk folder
MAX_RAW_CHARS = 2000  # of a rejected record kept in the rejects file


@dataclass(frozen=True)
class DataSource:
    """One readable unit of an input and the registered reader for it."""

    uri: str
    reader: str


def reader_for(name: str, reader: str = "auto", strict: bool = True) -> str | None:
    """The reader of a file: ``reader`` itself unless it is ``auto``, else by suffix."""
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
        raise ValueError(f"{name}: cannot tell the format from the name; set reader = \"jsonl\" (or parquet, "
                         "text, hf_dataset, mediawiki)")
    return None


def is_hf_dataset_folder(uri: str) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return exists(join(uri, HF_DATASET_DICT_MARKER)) or all(exists(join(uri, m)) for m in HF_DATASET_MARKERS)


def list_sources(uri: str, reader: str = "auto") -> list[DataSource]:
    """The data sources of an input: the file itself, a saved HF dataset (one source), or every
    data file below a folder (sorted; markers, manifests, rejects and temporaries skipped)."""
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file or folder")
    if not fs.isdir(path):
        return [DataSource(uri, reader_for(uri.rsplit("/", 1)[-1], reader))]
    if is_hf_dataset_folder(uri):
        return [DataSource(uri, "hf_dataset" if reader == "auto" else reader)]
    protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    sources = []
    for found in sorted(fs.find(path)):
        relative = found[len(path.rstrip("/")):]
        name = found.rsplit("/", 1)[-1]
        if name.startswith(("_", ".")) or "/_" in relative or ".tmp-" in name or name in BOOKKEEPING:
            continue  # markers, shard bookkeeping, temporaries
        if name.startswith("rejects") or "/rejects/" in relative:
            continue  # another stage's rejects are not its output
        kind = reader_for(name, reader, strict=False) if reader == "auto" else reader
        if kind:
            sources.append(DataSource(protocol + found if protocol and not found.startswith(protocol) else found,
                                      kind))
    if not sources:
        raise FileNotFoundError(f"{uri}: no data files in this folder (looked for "
                                f"{', '.join(READER_BY_SUFFIX)}, optionally compressed, or a saved HF dataset)")
    return sources


@dataclass
class RejectLog:
    """Malformed records of a stage's input, each with its source, line and reason.

    Readers call it (``on_reject(record)``); ``write`` keeps them in a rejects file and
    ``enforce`` fails the stage, naming the first bad record, when too many were bad.
    """

    records: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def add(self, source: str, line: int | str, error: str, raw: Any = "") -> None:
        text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
        self.records.append({"source": source, "line": line, "error": error, "raw": text[:MAX_RAW_CHARS]})

    def __len__(self) -> int:
        return len(self.records)

    def write(self, uri: str) -> int:
        """Write the rejects (if any) as JSONL at ``uri``; returns how many."""
        from llm_core.builtins.jsonl import write_records

        if self.records:
            write_records(uri, self.records)
            log.warning("%d malformed records written to %s", len(self.records), uri)
        return len(self.records)

    def enforce(self, total: int, max_fraction: float, what: str, rejects_uri: str) -> None:
        """Fail when nothing is usable or more than ``max_fraction`` of ``total`` records are bad."""
        bad = len(self.records)
        if total and total - bad > 0 and bad <= max_fraction * total:
            return
        first = self.records[0] if self.records else {"source": "-", "line": "-", "error": "no records"}
        raise ValueError(f"{bad} of {total} {what} are malformed (see {rejects_uri}); first: "
                         f"{first['source']}:{first['line']}: {first['error']}. Fix the input, or raise "
                         f"max_rejects_fraction (now {max_fraction}) to train on the rest")


def iter_records(source: DataSource, rejects: RejectLog,
                 split: str | None = None) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(source, line or row number, record) for every JSON object of one source; anything else
    (bad JSON, not an object, bad UTF-8) goes to ``rejects``. ``split``: of a saved DatasetDict."""
    if source.reader == "jsonl":
        yield from _jsonl_records(source.uri, rejects)
    elif source.reader == "parquet":
        yield from _parquet_records(source.uri)
    elif source.reader == "hf_dataset":
        yield from _hf_records(source.uri, split)
    else:
        raise ValueError(f"{source.uri}: records are read from JSONL, Parquet or saved HF datasets, not "
                         f"{source.reader!r}")


def _jsonl_records(uri: str, rejects: RejectLog) -> Iterator[tuple[str, int, dict[str, Any]]]:
    with fsspec.open(uri, "rb", compression="infer") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                rejects.add(uri, line_no, f"{type(exc).__name__}: {exc}",
                            raw.decode("utf-8", "backslashreplace").rstrip("\n"))
                continue
            if not isinstance(record, dict):
                rejects.add(uri, line_no, f"expected a JSON object, got {type(record).__name__}", record)
                continue
            yield uri, line_no, record


def _parquet_records(uri: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    with fsspec.open(uri, "rb") as handle:
        row = 0
        for batch in pq.ParquetFile(handle).iter_batches():
            for record in batch.to_pylist():
                row += 1
                yield uri, row, record


def _hf_records(uri: str, split: str | None = None) -> Iterator[tuple[str, int, dict[str, Any]]]:
    from llm_core.hf_datasets import load_saved_dataset

    dataset = load_saved_dataset(uri, split)
    for row, record in enumerate(dataset, start=1):
        yield uri, row, dict(record)


def load_records(uri: str, parse: Callable[[dict[str, Any]], T], *, rejects_uri: str, what: str = "records",
                 max_rejects_fraction: float = 0.5, reader: str = "auto", split: str | None = None,
                 rejects: RejectLog | None = None, gate: RecordGate | None = None) -> list[T]:
    """Every record of an input parsed by ``parse`` (which raises ``ValueError`` / ``TypeError`` /
    ``KeyError`` naming the bad field); bad records go to ``rejects_uri``, and too many are an error
    raised before any work starts. ``split`` picks a split of a saved HF ``DatasetDict``; pass
    ``rejects`` to see what was rejected; ``gate`` drops (or refuses) records it flags, before parsing."""
    rejects = RejectLog() if rejects is None else rejects
    parsed: list[T] = []
    for source in list_sources(uri, reader):
        records = iter_records(source, rejects, split)
        for where, line, record in (gate.screen(records) if gate is not None else records):
            try:
                parsed.append(parse(record))
            except (ValueError, TypeError, KeyError) as exc:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                rejects.add(where, line, f"{type(exc).__name__}: {message}", record)
    rejects.write(rejects_uri)
    if gate is not None:
        gate.finish(what)
    rejects.enforce(len(parsed) + len(rejects), max_rejects_fraction, what, rejects_uri)
    return parsed


def record_text(record: Mapping[str, Any]) -> str:
    """What a gate reads of a record: its string fields (not ``id``) and the contents of its
    ``messages``, in order, one per line. Prompts, answers and chats alike."""
    parts = []
    for key, value in record.items():
        if key == "id":
            continue
        if isinstance(value, str):
            parts.append(value)
        elif key == "messages" and isinstance(value, list):
            parts += [m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return "\n".join(parts)



def parse_problem(record: dict[str, Any], *, need_reference: bool = True) -> Problem:
    """A ``{"id", "prompt", "reference"}`` record as a ``Problem``; a missing or empty prompt, or a
    missing reference where one is needed, is an error the reject log records."""
    if not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
        raise TypeError("expected an object with a non-empty string field 'prompt'")
    if need_reference and record.get("reference") is None:
        raise ValueError("missing field 'reference' (the known answer)")
    return Problem(str(record.get("id", "")), record["prompt"], record.get("reference"))


def load_problems(uri: str, rejects_uri: str, max_rejects_fraction: float = 0.5, gate: RecordGate | None = None,
                  *, need_reference: bool = True, what: str = "problems") -> list[Problem]:
    """Every problem of an input (JSONL, Parquet or a saved HF dataset) through ``load_records``:
    bad records go to ``rejects_uri``, records the ``gate`` flags are dropped, and a problem
    without an id is named by its position (``problem-3``)."""
    problems = load_records(uri, lambda r: parse_problem(r, need_reference=need_reference), rejects_uri=rejects_uri,
                            what=what, max_rejects_fraction=max_rejects_fraction, gate=gate)
    return [p if p.id else Problem(f"problem-{i}", p.prompt, p.reference) for i, p in enumerate(problems)]


@dataclass
class RecordGate:
    """A registered filter applied to every loaded record's text (``record_text``) before parsing.

    A flagged record is dropped and kept in ``dropped_uri`` (source, line, reason, what the filter
    put in the document's metadata, the record); with ``action = "refuse"`` any flagged record
    fails the stage instead, naming the first. ``finish`` writes ``summary_uri`` and hands the
    counts to ``on_finish`` (the stage's metrics). A filter with ``filter_batch`` gets records in
    batches of ``batch_size``.
    """

    filter: Filter
    name: str
    action: Literal["drop", "refuse"]
    dropped_uri: str
    summary_uri: str
    on_finish: Callable[[dict[str, Any]], None] | None = None
    batch_size: int = 512
    checked: int = 0
    seconds: float = 0.0  # spent judging
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def screen(self, records: Iterator[tuple[str, int, dict[str, Any]]]) -> Iterator[tuple[str, int, dict[str, Any]]]:
        batch: list[tuple[str, int, dict[str, Any]]] = []
        for item in records:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield from self._judge(batch)
                batch = []
        yield from self._judge(batch)

    def _judge(self, batch: list[tuple[str, int, dict[str, Any]]]) -> list[tuple[str, int, dict[str, Any]]]:
        started = time.perf_counter()
        docs = [Document(str(r.get("id", f"{w}:{line}")), record_text(r), {}) for w, line, r in batch]
        by_batch = getattr(self.filter, "filter_batch", None)
        reasons = by_batch(docs) if by_batch else [self.filter.filter(d) for d in docs]
        self.seconds += time.perf_counter() - started
        self.checked += len(batch)
        kept = []
        for (where, line, record), doc, reason in zip(batch, docs, reasons, strict=True):
            if reason is None:
                kept.append((where, line, record))
                continue
            self.dropped.append({"source": where, "line": line, "reason": reason, "metadata": doc.metadata,
                                 "record": record})
            if self.action == "refuse":
                raise ValueError(f"{where}:{line}: record flagged by {self.name!r} ({reason}); this stage "
                                 f"refuses contaminated data (decontaminate.action = \"refuse\"). Remove it from "
                                 "the input, or set action = \"drop\" to train on the rest")
        return kept

    def finish(self, what: str = "records") -> dict[str, Any]:
        from llm_core.builtins.jsonl import write_records

        write_records(self.dropped_uri, self.dropped)
        reasons = Counter(d["reason"] for d in self.dropped)
        summary = {"filter": self.name, "action": self.action, "what": what, "checked": self.checked,
                   "dropped": len(self.dropped), "by_reason": dict(reasons.most_common()),
                   "seconds": round(self.seconds, 3), "dropped_uri": self.dropped_uri}
        write_json(self.summary_uri, summary)
        if self.dropped:
            log.warning("%d of %d %s flagged by %s, dropped (see %s)", len(self.dropped), self.checked, what,
                        self.name, self.dropped_uri)
        if self.on_finish is not None:
            self.on_finish({"decontaminate_checked": self.checked, "contaminated": len(self.dropped)})
        return summary
