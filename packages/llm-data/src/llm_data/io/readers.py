"""Readers beyond core's JSONL: Parquet, plain text files, HF ``datasets`` on disk, MediaWiki XML.

Each streams documents from one file (the filter stage makes one shard per file) and sends a
malformed record to ``on_reject`` with its source and position instead of raising.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any, Literal

import fsspec
from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document

Reject = Callable[[dict[str, Any]], None]


def _file_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _record_to_document(record: dict[str, Any], text_key: str, id_key: str, fallback_id: str) -> Document:
    if isinstance(record.get("metadata"), str):  # the Parquet writer stores metadata as JSON text
        record = {**record, "metadata": json.loads(record["metadata"])}
    doc = Document.from_dict(record, text_key, id_key)
    if not doc.id or doc.id == "None":
        doc.id = fallback_id
    return doc


class ParquetReaderConfig(Config):
    text_key: str = Field("text", description="column holding the document text")
    id_key: str = Field("id", description="column holding the id; missing ids become file:row")
    batch_rows: int = Field(1024, ge=1, description="rows read at a time (memory stays flat)")


class ParquetReader:
    """Streams rows of a Parquet file, one record batch at a time."""

    def __init__(self, config: ParquetReaderConfig | None = None):
        config = config or ParquetReaderConfig()
        self.text_key, self.id_key, self.batch_rows = config.text_key, config.id_key, config.batch_rows

    def read(self, uri: str, on_reject: Reject) -> Iterator[Document]:
        import pyarrow.parquet as pq

        name = _file_name(uri)
        with fsspec.open(uri, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            if self.text_key not in parquet.schema_arrow.names:
                raise KeyError(f"{uri}: no column {self.text_key!r}; columns are "
                               f"{parquet.schema_arrow.names} (set reader_options.text_key)")
            row = 0
            for batch in parquet.iter_batches(batch_size=self.batch_rows):
                for record in batch.to_pylist():
                    row += 1
                    try:
                        yield _record_to_document(record, self.text_key, self.id_key, f"{name}:{row}")
                    except (KeyError, TypeError, ValueError) as exc:
                        on_reject({"source": uri, "line": row, "error": f"{type(exc).__name__}: {exc}",
                                   "raw": repr(record)[:2000]})


class TextReaderConfig(Config):
    split: Literal["file", "paragraphs", "lines"] = Field(
        "file", description="one document per file, per blank-line-separated paragraph, or per line")
    encoding: str = "utf-8"


class TextReader:
    """Plain text files (``.txt``, optionally compressed); the filter stage reads a folder of them."""

    def __init__(self, config: TextReaderConfig | None = None):
        config = config or TextReaderConfig()
        self.split, self.encoding = config.split, config.encoding

    def read(self, uri: str, on_reject: Reject) -> Iterator[Document]:
        name = _file_name(uri)
        with fsspec.open(uri, "rb", compression="infer") as handle:
            raw = handle.read()
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            on_reject({"source": uri, "line": line, "error": f"UnicodeDecodeError: {exc.reason} at byte "
                       f"{exc.start}; set reader_options.encoding", "raw": ""})
            return
        meta = {"source": name}
        if self.split == "file":
            yield Document(id=name, text=text, metadata=meta)
            return
        parts = text.split("\n\n") if self.split == "paragraphs" else text.split("\n")
        for i, part in enumerate(parts, start=1):
            if part.strip():
                yield Document(id=f"{name}:{i}", text=part.strip("\n"), metadata=dict(meta))


class HfDatasetReaderConfig(Config):
    text_key: str = Field("text", description="column holding the document text")
    id_key: str = Field("id", description="column holding the id; missing ids become name:row")
    split: str | None = Field(None, description="split of a DatasetDict folder; None: a plain Dataset")


class HfDatasetReader:
    """A Hugging Face dataset saved with ``save_to_disk`` (the folder), or one of its ``.arrow`` files.

    Arrow files are memory-mapped, so reading row by row keeps memory flat.
    """

    def __init__(self, config: HfDatasetReaderConfig | None = None):
        config = config or HfDatasetReaderConfig()
        self.text_key, self.id_key, self.split = config.text_key, config.id_key, config.split

    def read(self, uri: str, on_reject: Reject) -> Iterator[Document]:
        from llm_core.hf_datasets import load_saved_dataset

        dataset = load_saved_dataset(uri, self.split)
        if self.text_key not in dataset.column_names:
            raise KeyError(f"{uri}: no column {self.text_key!r}; columns are {dataset.column_names} "
                           "(set reader_options.text_key)")
        name = _file_name(uri)
        for row, record in enumerate(dataset, start=1):
            try:
                yield _record_to_document(record, self.text_key, self.id_key, f"{name}:{row}")
            except (KeyError, TypeError, ValueError) as exc:
                on_reject({"source": uri, "line": row, "error": f"{type(exc).__name__}: {exc}",
                           "raw": repr(record)[:2000]})


class MediaWikiReaderConfig(Config):
    namespaces: list[int] = Field([0], description="page namespaces kept (0: articles)")
    skip_redirects: bool = Field(True, description="drop pages that only redirect elsewhere")
    base_url: str = Field("https://en.wikipedia.org/wiki/", description="prefix of metadata.url")


class MediaWikiReader:
    """Raw wikitext pages of a MediaWiki XML dump (``.xml``, ``.xml.bz2``), streamed with iterparse."""

    def __init__(self, config: MediaWikiReaderConfig | None = None):
        config = config or MediaWikiReaderConfig()
        self.namespaces = set(config.namespaces if config.namespaces is not None else [0])
        self.skip_redirects, self.base_url = config.skip_redirects, config.base_url

    def read(self, uri: str, on_reject: Reject) -> Iterator[Document]:
        with fsspec.open(uri, "rb", compression="infer") as handle:
            page: dict[str, str] = {}
            try:
                for _, elem in ET.iterparse(handle, events=("end",)):
                    tag = elem.tag.rsplit("}", 1)[-1]
                    if tag in ("title", "ns", "id", "text") and tag not in page:
                        page[tag] = elem.text or ""
                    elif tag == "redirect":
                        page["redirect"] = "1"
                    elif tag == "page":
                        doc = self._page_document(page)
                        if doc is not None:
                            yield doc
                        page = {}
                        elem.clear()  # keep memory flat on large dumps
            except ET.ParseError as exc:
                on_reject({"source": uri, "line": exc.position[0], "error": f"ParseError: {exc}", "raw": ""})

    def _page_document(self, page: dict[str, str]) -> Document | None:
        if int(page.get("ns") or 0) not in self.namespaces:
            return None
        if self.skip_redirects and page.get("redirect"):
            return None
        title = page.get("title", "")
        return Document(id=f"enwiki-{page.get('id', title)}", text=page.get("text", ""),
                        metadata={"title": title, "url": self.base_url + title.replace(" ", "_"),
                                  "source": "wikipedia"})
