"""Token data for pretraining: the ``llmt-tokens-v1`` folder format, tokenizing JSONL into it, packing.

A token folder holds ``meta.json``::

    {"format": "llmt-tokens-v1", "dtype": "uint16" | "uint32", "vocab_size": int, "eos_id": int,
     "tokenizer": str, "shards": [{"file": "tokens-00000.bin", "num_tokens": int}]}

and raw little-endian token files in which documents are concatenated, each followed by
``eos_id``. Training reads them with ``numpy.memmap`` and cuts fixed-length blocks (packing), in
an order that is a pure function of (seed, sample index): the data position is just the step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from llm_core.artifacts import atomic_open, exists, join, write_json

FORMAT = "llmt-tokens-v1"
META = "meta.json"
SHARD_TOKENS = 50_000_000  # tokens per shard file when writing


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


class TokenStream:
    """All tokens of a token folder as one sequence, read lazily from memory-mapped shards."""

    def __init__(self, uri: str):
        self.uri = uri
        self.meta = read_meta(uri)
        dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self.arrays = [_open_tokens(join(uri, s["file"]), dtype, s["num_tokens"]) for s in self.meta["shards"]]
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])
        self.eos_id = self.meta["eos_id"]

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


def _open_tokens(uri: str, dtype: np.dtype, count: int) -> np.ndarray:
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: listed in meta.json but missing")
    if fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol:
        array = np.memmap(path, dtype=dtype, mode="r")
    else:  # remote or in-memory stores cannot be memory-mapped: read the shard once
        array = np.frombuffer(fs.cat_file(path), dtype=dtype)
    if len(array) != count:
        raise ValueError(f"{uri}: holds {len(array)} tokens but meta.json says num_tokens={count}")
    return array


def write_token_folder(uri: str, docs: Iterable[str], encode_batch: Callable[[list[str]], list[list[int]]],
                       *, vocab_size: int, eos_id: int, tokenizer: str, batch: int = 256) -> dict[str, Any]:
    """Tokenize documents into a token folder; ``meta.json`` is written last (the commit marker)."""
    dtype = np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")
    shards: list[dict[str, Any]] = []
    buffer: list[np.ndarray] = []
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        if not buffered:
            return
        name = f"tokens-{len(shards):05d}.bin"
        with atomic_open(join(uri, name), "wb") as handle:
            handle.write(np.concatenate(buffer).astype(dtype).tobytes())
        shards.append({"file": name, "num_tokens": buffered})
        buffer, buffered = [], 0

    for texts in _chunks(docs, batch):
        for ids in encode_batch(texts):
            buffer.append(np.asarray(ids + [eos_id], dtype=np.int64))
            buffered += len(ids) + 1
        if buffered >= SHARD_TOKENS:
            flush()
    flush()
    if not shards:
        raise ValueError(f"{uri}: no documents to tokenize (every input record was rejected or empty)")
    meta = {"format": FORMAT, "dtype": dtype.name, "vocab_size": vocab_size, "eos_id": eos_id,
            "tokenizer": tokenizer, "shards": shards}
    write_json(join(uri, META), meta)
    return meta


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class PackedBlocks:
    """Fixed blocks of ``seq_len + 1`` tokens (inputs and shifted targets), reshuffled every epoch."""

    stream: TokenStream
    seq_len: int
    seed: int

    def __post_init__(self) -> None:
        self.count = (len(self.stream) - 1) // self.seq_len
        if self.count < 1:
            raise ValueError(f"{self.stream.uri}: {len(self.stream)} tokens are fewer than one sequence "
                             f"of seq_len={self.seq_len}; add data or lower seq_len")
        self._orders: dict[int, np.ndarray] = {}

    def block(self, index: int) -> np.ndarray:
        """The ``index``-th block in training order (epochs wrap around, each with a new order)."""
        epoch, offset = divmod(index, self.count)
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.count)}
        start = int(self._orders[epoch][offset]) * self.seq_len
        return self.stream.read(start, self.seq_len + 1)


@dataclass
class ReplayMix:
    """Sequences from ``primary``, with a seeded share ``ratio`` drawn from ``replay`` instead."""

    primary: PackedBlocks
    replay: PackedBlocks | None
    ratio: float
    seed: int

    def block(self, index: int) -> np.ndarray:
        if self.replay is None or self.ratio == 0:
            return self.primary.block(index)
        # Which source sample ``index`` comes from, and how many earlier samples each source gave,
        # are functions of (seed, index), so a resumed run draws exactly what the first run would.
        from_replay = self._replay_counts(index + 1)
        if from_replay[index + 1] > from_replay[index]:
            return self.replay.block(int(from_replay[index]))
        return self.primary.block(index - int(from_replay[index]))

    def _replay_counts(self, needed: int) -> np.ndarray:
        """counts[i] = how many of samples 0..i-1 come from replay; grown by doubling, same prefix."""
        counts = getattr(self, "_counts", None)
        if counts is None or len(counts) <= needed:
            size = max(needed + 1, 2 * (len(counts) if counts is not None else 1024))
            draws = np.random.default_rng([self.seed, 7]).random(size) < self.ratio
            counts = np.concatenate([[0], np.cumsum(draws)])
            self._counts = counts
        return counts


def global_batch(source: PackedBlocks | ReplayMix, step: int, batch_size: int, rank: int = 0,
                 world: int = 1) -> dict[str, Any]:
    """This rank's rows of the global batch of ``step``: inputs and aligned next-token labels."""
    import torch

    rows = range(step * batch_size, (step + 1) * batch_size)
    mine = [source.block(i) for i in rows][rank::world]
    blocks = torch.from_numpy(np.stack(mine))
    return {"input_ids": blocks[:, :-1].contiguous(), "labels": blocks[:, 1:].contiguous()}
