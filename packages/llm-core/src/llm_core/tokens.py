"""The token folder, ``llmt-tokens-v1``: the one on-disk format of tokenized text, one writer, one reader.

A token folder holds ``meta.json``::

    {"format": "llmt-tokens-v1", "dtype": "uint16" | "uint32", "vocab_size": int, "eos_id": int,
     "tokenizer": str, "shards": [{"file": "tokens-00000.bin", "num_tokens": int}]}

and raw little-endian token files in which documents are concatenated, each followed by
``eos_id``. ``meta.json`` is written last: it is the folder's commit marker, so a killed writer
leaves no folder a reader would accept. Readers memory-map local shards (``TokenStream``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from llm_core.artifacts import atomic_open, exists, join, write_json

FORMAT = "llmt-tokens-v1"
META = "meta.json"
SHARD_TOKENS = 50_000_000  # tokens per shard file when one writer fills several


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest dtype that holds every id of the vocabulary (little-endian)."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def is_token_folder(uri: str) -> bool:
    return exists(join(uri, META))


def read_meta(uri: str) -> dict[str, Any]:
    """Read and check ``meta.json``; errors name the field and the fix."""
    path = join(uri, META)
    with fsspec.open(path, "r", encoding="utf-8") as handle:
        meta = json.load(handle)
    problems = []
    if meta.get("format") != FORMAT:
        problems.append(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("dtype") not in ("uint16", "uint32"):
        problems.append(f"dtype is {meta.get('dtype')!r}, expected 'uint16' or 'uint32'")
    for key in ("vocab_size", "eos_id"):
        if not isinstance(meta.get(key), int):
            problems.append(f"{key} must be an integer")
    shards = meta.get("shards")
    if not isinstance(shards, list) or not shards:
        problems.append("shards must be a non-empty list of {file, num_tokens}")
    else:
        for i, shard in enumerate(shards):
            if not isinstance(shard, dict) or "file" not in shard or not isinstance(shard.get("num_tokens"), int):
                problems.append(f"shards[{i}] must be an object with 'file' and integer 'num_tokens'")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return meta


def write_meta(uri: str, *, dtype: str, vocab_size: int, eos_id: int, tokenizer: str,
               shards: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Commit a token folder whose shard files are written: ``meta.json`` last, atomically."""
    if not shards or not any(s["num_tokens"] for s in shards):
        raise ValueError(f"{uri}: no tokens to write (every input record was rejected or empty)")
    meta = {"format": FORMAT, "dtype": dtype, "vocab_size": vocab_size, "eos_id": eos_id,
            "tokenizer": tokenizer, "shards": list(shards)}
    write_json(join(uri, META), meta)
    return meta


class TokenShardWriter:
    """Appends documents' token ids (each followed by EOS) to one shard file, written atomically.

    Use as a context manager; ``num_tokens`` is the shard's size once it closes. Ids that do not
    fit the dtype are an error that names the fix.
    """

    def __init__(self, uri: str, vocab_size: int, eos_id: int):
        self.uri, self.eos_id = uri, eos_id
        self.dtype = token_dtype(vocab_size)
        self.num_tokens = 0
        self._limit = np.iinfo(self.dtype).max
        self._handle: Any = None
        self._context: Any = None

    def __enter__(self) -> TokenShardWriter:
        self._context = atomic_open(self.uri, "wb")
        self._handle = self._context.__enter__()
        return self

    def write(self, ids: Sequence[int]) -> None:
        array = np.asarray([*ids, self.eos_id], dtype=np.int64)
        if array.max() > self._limit or array.min() < 0:
            raise ValueError(f"{self.uri}: token id {int(array.max())} does not fit {self.dtype.name}; the "
                             "tokenizer's vocabulary is larger than its vocab_size says")
        self._handle.write(array.astype(self.dtype).tobytes())
        self.num_tokens += int(array.size)

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


def write_token_folder(uri: str, documents: Iterable[Sequence[int]], *, vocab_size: int, eos_id: int,
                       tokenizer: str, shard_tokens: int = SHARD_TOKENS) -> dict[str, Any]:
    """Write documents (token id sequences) as a token folder, in shards of about ``shard_tokens``."""
    shards: list[dict[str, Any]] = []
    iterator = iter(documents)
    exhausted = False
    while not exhausted:
        name = f"tokens-{len(shards):05d}.bin"
        with TokenShardWriter(join(uri, name), vocab_size, eos_id) as writer:
            exhausted = True
            for ids in iterator:
                writer.write(ids)
                if writer.num_tokens >= shard_tokens:
                    exhausted = False
                    break
        if writer.num_tokens:
            shards.append({"file": name, "num_tokens": writer.num_tokens})
    return write_meta(uri, dtype=token_dtype(vocab_size).name, vocab_size=vocab_size, eos_id=eos_id,
                      tokenizer=tokenizer, shards=shards)


class TokenStream:
    """All tokens of a token folder as one sequence, read lazily from memory-mapped shards."""

    def __init__(self, uri: str):
        self.uri = uri
        self.meta = read_meta(uri)
        dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self.arrays = [_open_tokens(join(uri, s["file"]), dtype, s["num_tokens"]) for s in self.meta["shards"]]
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])
        self.eos_id = self.meta["eos_id"]
        self.vocab_size = self.meta["vocab_size"]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` across shard boundaries, as int64."""
        out, pos, end = [], start, start + length
        shard = int(np.searchsorted(self.offsets, start, side="right") - 1)
        while pos < end:
            array, base = self.arrays[shard], int(self.offsets[shard])
            take = min(end, base + len(array)) - pos
            out.append(np.asarray(array[pos - base: pos - base + take], dtype=np.int64))
            pos += take
            shard += 1
        return np.concatenate(out)

    def documents(self) -> Iterable[np.ndarray]:
        """Each document's ids (without its EOS), in order."""
        for array in self.arrays:
            ends = np.flatnonzero(np.asarray(array) == self.eos_id)
            start = 0
            for end in ends:
                yield np.asarray(array[start:end], dtype=np.int64)
                start = int(end) + 1


def _open_tokens(uri: str, dtype: np.dtype, count: int) -> np.ndarray:
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: listed in meta.json but missing")
    if "file" in fs.protocol:
        array = np.memmap(path, dtype=dtype, mode="r")
    else:  # remote or in-memory stores cannot be memory-mapped: read the shard once
        array = np.frombuffer(fs.cat_file(path), dtype=dtype)
    if len(array) != count:
        raise ValueError(f"{uri}: holds {len(array)} tokens but meta.json says num_tokens={count}")
    return array
