"""JSON Lines reading and writing (plain, .gz, .zst) with malformed lines sent to rejects."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fsspec
from pydantic import Field

from llm_core.artifacts import atomic_open
from llm_core.config import Config
from llm_core.types import Document


class JsonlReaderConfig(Config):
    text_key: str = Field("text", description="field holding the document text")
    id_key: str = Field("id", description="field holding the id; missing ids become file:line")


class JsonlReader:
    """Streams documents from a JSONL file; compression is inferred from the name."""

    def __init__(self, config: JsonlReaderConfig | None = None):
        config = config or JsonlReaderConfig()
        self.text_key = config.text_key
        self.id_key = config.id_key

    def read(self, uri: str, on_reject: Callable[[dict[str, Any]], None]) -> Iterator[Document]:
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        with fsspec.open(uri, "rb", compression="infer") as handle:
            for line_no, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                    if not isinstance(record, dict):
                        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
                    doc = Document.from_dict(record, self.text_key, self.id_key)
                except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
                    on_reject({"source": uri, "line": line_no, "error": f"{type(exc).__name__}: {exc}",
                               "raw": raw.decode("utf-8", "backslashreplace").rstrip("\n")})
                    continue
                if not doc.id:
                    doc.id = f"{name}:{line_no}"
                yield doc


class JsonlWriter:
    """Writes documents as JSONL, atomically (a temporary file renamed into place)."""

    def write(self, uri: str, docs: Iterable[Document]) -> int:
        count = 0
        with atomic_open(uri, "wt", encoding="utf-8", compression="infer") as handle:
            for doc in docs:
                handle.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")
                count += 1
        return count


def write_records(uri: str, records: Iterable[dict[str, Any]]) -> int:
    """Write plain JSON records (rejects, reports) atomically; returns the count."""
    count = 0
    with atomic_open(uri, "wt", encoding="utf-8", compression="infer") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
