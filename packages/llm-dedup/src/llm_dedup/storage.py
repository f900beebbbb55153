"""Shared I/O of the dedup stages: numpy arrays on any fsspec store, input sources, and the final
pass that splits a shard into kept / dropped documents (rejects counted and written)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from llm_core import data_io
from llm_core.artifacts import atomic_open, join
from llm_core.builtins.jsonl import write_records
from llm_core.types import Document

EXAMPLES_PER_SHARD = 3  # dropped documents quoted in a shard's result, for the stage report


def save_array(uri: str, array: np.ndarray) -> None:
    """Write one array as .npy, atomically."""
    with atomic_open(uri, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def load_array(uri: str) -> np.ndarray:
    with fsspec.open(uri, "rb") as handle:
        return np.load(io.BytesIO(handle.read()), allow_pickle=False)


def save_arrays(uri: str, **arrays: np.ndarray) -> None:
    """Write several arrays as one .npz, atomically."""
    with atomic_open(uri, "wb") as handle:
        np.savez(handle, **arrays)


def load_arrays(uri: str) -> dict[str, np.ndarray]:
    with fsspec.open(uri, "rb") as handle:
        raw = handle.read()
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@dataclass(frozen=True)
class Source:
    """One input file and the reader that parses it; a shard of every dedup stage."""

    shard_id: str
    uri: str
    reader: str


def list_sources(documents_uri: str, reader: str = "auto") -> list[Source]:
    """The input's data sources (``llm_core.data_io``), each one a shard of every dedup stage."""
    return [Source(f"shard-{i:05d}", s.uri, s.reader)
            for i, s in enumerate(data_io.list_sources(documents_uri, reader))]


def read_documents(source: Source, reader_options: Mapping[str, Any],
                   on_reject: Callable[[dict[str, Any]], None]):
    """Documents of one source, in file order, through the registered reader."""
    from llm_core.plugins import get_registries

    reader = get_registries().readers.build(source.reader, dict(reader_options))
    return reader.read(source.uri, on_reject)


def write_rejects(out_dir: str, shard_id: str, rejects: list[dict[str, Any]]) -> None:
    if rejects:
        write_records(join(out_dir, "rejects", f"{shard_id}.jsonl"), rejects)


def split_shard(source: Source, reader_options: Mapping[str, Any], out_dir: str, suffix: str,
                drops: Mapping[int, dict[str, Any]] | Callable[[int, Document], dict[str, Any] | None],
                write_dropped: bool = True) -> dict[str, Any]:
    """Write the documents of ``source`` to ``kept/`` or, when their row is in ``drops`` (or the
    ``drops`` function returns metadata for it), to ``dropped/`` with that metadata
    (``drop_reason``, ``duplicate_of``...). Rows count the documents the reader yields, the same
    numbering every dedup step uses."""
    decide = drops if callable(drops) else (lambda row, _doc: drops.get(row))
    rejects: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    kept = dropped = 0
    with contextlib.ExitStack() as stack:
        kept_out = stack.enter_context(atomic_open(join(out_dir, "kept", source.shard_id + suffix), "wt",
                                                   encoding="utf-8", compression="infer"))
        dropped_out = stack.enter_context(atomic_open(join(out_dir, "dropped", source.shard_id + suffix), "wt",
                                                      encoding="utf-8", compression="infer")) \
            if write_dropped else None
        for row, doc in enumerate(read_documents(source, reader_options, rejects.append)):
            extra = decide(row, doc)
            if extra is None:
                kept += 1
                kept_out.write(_line(doc))
                continue
            dropped += 1
            if len(examples) < EXAMPLES_PER_SHARD:
                examples.append({"id": doc.id, "text": " ".join(doc.text.split())[:200], **extra})
            if dropped_out is not None:
                doc.metadata.update(extra)
                dropped_out.write(_line(doc))
    write_rejects(out_dir, source.shard_id, rejects)
    return {"source": source.uri, "kept": kept, "dropped": dropped, "rejects": len(rejects),
            "examples": examples}


@dataclass(frozen=True)
class SplitTask:
    shard_id: str
    source: Source
    drops: dict[int, dict[str, Any]]
    reader_options: dict[str, Any]
    out_dir: str
    suffix: str
    write_dropped: bool


def split_task(task: SplitTask) -> dict[str, Any]:
    return split_shard(task.source, task.reader_options, task.out_dir, task.suffix, task.drops, task.write_dropped)


def _line(doc: Document) -> str:
    return json.dumps(doc.to_dict(), ensure_ascii=False) + "\n"
