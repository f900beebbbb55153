"""``exact_dedup``: drop documents whose normalized text was seen before; the first one stays.

Two modes. ``hash`` (exact): a 128-bit xxh3 hash per document (sharded), one global pass that finds
each hash's first occurrence (16 bytes of memory per document), then a sharded filter. ``bloom``
(streaming, for inputs larger than memory): the shards are read one after another through an
rbloom Bloom filter sized for ``bloom_capacity`` documents at ``bloom_error_rate``; a document
whose hash is already in the filter is dropped. A false positive drops a document that was in
fact unique: with at most ``bloom_capacity`` documents this happens to each unique document with
probability at most ``bloom_error_rate`` (the report gives the rate expected for the count seen).
The filter's state is saved after every shard, so a killed run resumes at the next shard.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import xxhash
from pydantic import Field

from llm_core.artifacts import atomic_open, exists, join, read_json, remove_tree, write_json
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import Document, StageResult
from llm_dedup.report import Chart, size_histogram, write_report
from llm_dedup.storage import (
    Source,
    SplitTask,
    list_sources,
    load_array,
    read_documents,
    save_array,
    split_shard,
    split_task,
    write_rejects,
)

PUNCTUATION_RE = re.compile(r"[^\w\s]")
DIGIT_RE = re.compile(r"\d")
SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Normalization:
    """What makes two texts "the same": each step is optional."""

    lowercase: bool = True
    whitespace: bool = True  # collapse runs of whitespace, strip the ends
    punctuation: bool = False  # remove punctuation and symbols
    digits: bool = False  # every digit becomes 0
    unicode: bool = True  # NFKC: compatibility forms (full-width letters, ligatures) fold together

    def __call__(self, text: str) -> str:
        if self.unicode:
            text = unicodedata.normalize("NFKC", text)
        if self.lowercase:
            text = text.lower()
        if self.punctuation:
            text = PUNCTUATION_RE.sub("", text)
        if self.digits:
            text = DIGIT_RE.sub("0", text)
        if self.whitespace:
            text = SPACE_RE.sub(" ", text).strip()
        return text


class ExactDedupConfig(Config):
    mode: Literal["hash", "bloom"] = Field("hash", description="hash: exact, 16 B/doc in memory; bloom: "
                                           "streaming Bloom filter with a bounded false-positive rate")
    lowercase: bool = True
    whitespace: bool = Field(True, description="collapse whitespace runs and strip the ends")
    punctuation: bool = Field(False, description="remove punctuation and symbols before hashing")
    digits: bool = Field(False, description="replace every digit with 0 before hashing")
    unicode: bool = Field(True, description="NFKC-normalize before hashing")
    bloom_capacity: int = Field(10_000_000, ge=1, description="documents the Bloom filter is sized for")
    bloom_error_rate: float = Field(1e-6, gt=0, lt=0.5, description="false-positive rate at capacity")
    reader: str = Field("auto", description="registered reader, or auto (by file suffix)")
    reader_options: dict[str, Any] = Field(default_factory=dict)
    output_suffix: str = Field(".jsonl.gz", description="kept / dropped file suffix; sets compression")
    write_dropped: bool = True


def text_hash(text: str) -> tuple[int, int]:
    """(high, low) 64-bit halves of the xxh3-128 hash of the UTF-8 text."""
    digest = xxhash.xxh3_128_intdigest(text.encode("utf-8"))
    return digest >> 64, digest & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class HashTask:
    shard_id: str
    source: Source
    out_dir: str
    reader_options: dict[str, Any]
    normalization: Normalization


def hash_shard(task: HashTask) -> dict[str, Any]:
    rejects: list[dict[str, Any]] = []
    ids, hashes = [], []
    for doc in read_documents(task.source, task.reader_options, rejects.append):
        ids.append(doc.id)
        hashes.append(text_hash(task.normalization(doc.text)))
    base = join(task.out_dir, "hashes", task.source.shard_id)
    save_array(base + ".npy", np.array(hashes, dtype=np.uint64).reshape(-1, 2))
    write_json(base + ".ids.json", ids)
    write_rejects(task.out_dir, task.source.shard_id, rejects)
    return {"docs": len(ids), "rejects": len(rejects)}


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """For each row of an (n, 2) uint64 array, the index of the first row with the same value."""
    if not len(hashes):
        return np.zeros(0, dtype=np.int64)
    keys = np.ascontiguousarray(hashes).view(np.dtype((np.void, 16))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.ravel()].astype(np.int64)


@dataclass(frozen=True)
class BloomTask:
    shard_id: str
    source: Source
    previous_state: str | None
    state: str
    capacity: int
    error_rate: float
    normalization: Normalization
    reader_options: dict[str, Any]
    out_dir: str
    suffix: str
    write_dropped: bool


def _item_hash(item: int) -> int:
    """rbloom's hash function: items are already 128-bit hashes, shifted into its signed range."""
    return item


def bloom_shard(task: BloomTask) -> dict[str, Any]:
    from rbloom import Bloom

    if task.previous_state is None:
        bloom = Bloom(task.capacity, task.error_rate, hash_func=_item_hash)
    else:
        with fsspec.open(task.previous_state, "rb") as handle:
            bloom = Bloom.load_bytes(handle.read(), _item_hash)

    def seen_before(_row: int, doc: Document) -> dict[str, Any] | None:
        item = xxhash.xxh3_128_intdigest(task.normalization(doc.text).encode("utf-8")) - (1 << 127)
        if item in bloom:
            return {"drop_reason": "exact_duplicate"}
        bloom.add(item)
        return None

    result = split_shard(task.source, task.reader_options, task.out_dir, task.suffix, seen_before,
                         task.write_dropped)
    with atomic_open(task.state, "wb") as handle:
        handle.write(bloom.save_bytes())
    return {**result, "approx_items": float(bloom.approx_items), "size_in_bits": int(bloom.size_in_bits)}


class ExactDedupStage:
    def __init__(self, config: ExactDedupConfig):
        self.mode = config.mode
        self.normalization = Normalization(config.lowercase, config.whitespace, config.punctuation, config.digits,
                                           config.unicode)
        self.capacity, self.error_rate = config.bloom_capacity, config.bloom_error_rate
        self.reader, self.reader_options = config.reader, config.reader_options
        self.suffix, self.write_dropped = config.output_suffix, config.write_dropped

    def run(self, ctx: StageContext) -> StageResult:
        start = time.perf_counter()
        sources = list_sources(ctx.input("documents"), self.reader)
        if self.mode == "hash":
            results, extra, groups = self._run_hash(ctx, sources)
        else:
            results, extra, groups = self._run_bloom(ctx, sources)
        metrics = {k: sum(r[k] for r in results) for k in ("kept", "dropped", "rejects")}
        metrics["docs"] = metrics["kept"] + metrics["dropped"]
        metrics["docs_per_second"] = round(metrics["docs"] / (time.perf_counter() - start), 1)
        charts = [Chart("documents", "bar", {k: metrics[k] for k in ("docs", "kept", "dropped", "rejects")})]
        if groups is not None:
            charts.append(Chart("copies per duplicated text", "hist", groups, xlabel="copies"))
        examples = [e for r in results for e in r.pop("examples", [])][:10]
        write_report(ctx.path("report.json"),
                     {**metrics, "mode": self.mode, **extra, "duplicate_group_sizes": groups,
                      "examples": examples, "shards": results}, charts)
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"kept": ctx.path("kept"), "dropped": ctx.path("dropped")})

    def _run_hash(self, ctx: StageContext, sources: list[Source]):
        tasks = [HashTask(f"hash-{s.shard_id}", s, ctx.stage_dir, self.reader_options, self.normalization)
                 for s in sources]
        counts = [r["docs"] for r in ctx.run_shards(hash_shard, tasks, desc=f"{ctx.name}: hashing")]
        hashes = np.concatenate([load_array(join(ctx.stage_dir, "hashes", f"{s.shard_id}.npy"))
                                 for s in sources])
        first = first_occurrences(hashes)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        duplicates = np.flatnonzero(first != np.arange(len(first)))
        ids = self._ids_of(ctx, sources, offsets, set(first[duplicates].tolist()))
        split = []
        for k, source in enumerate(sources):
            mine = duplicates[(duplicates >= offsets[k]) & (duplicates < offsets[k + 1])]
            drops = {int(r - offsets[k]): {"drop_reason": "exact_duplicate", "duplicate_of": ids[int(first[r])]}
                     for r in mine}
            split.append(SplitTask(f"split-{source.shard_id}", source, drops, self.reader_options, ctx.stage_dir,
                                   self.suffix, self.write_dropped))
        results = ctx.run_shards(split_task, split, desc=f"{ctx.name}: filter")
        groups = size_histogram(np.bincount(first)[np.bincount(first) > 1].tolist()) if len(first) else {}
        return results, {}, groups

    @staticmethod
    def _ids_of(ctx: StageContext, sources: list[Source], offsets: np.ndarray, rows: set[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for k, source in enumerate(sources):
            local = [r for r in rows if offsets[k] <= r < offsets[k + 1]]
            if local:
                ids = read_json(join(ctx.stage_dir, "hashes", f"{source.shard_id}.ids.json"))
                found.update({r: ids[r - int(offsets[k])] for r in local})
        return found

    def _run_bloom(self, ctx: StageContext, sources: list[Source]):
        results, previous = [], None
        for source in sources:  # in order: the filter's state flows from one shard to the next
            state = join(ctx.stage_dir, "bloom", f"after-{source.shard_id}.bin")
            task = BloomTask(f"bloom-{source.shard_id}", source, previous, state, self.capacity, self.error_rate,
                             self.normalization, self.reader_options, ctx.stage_dir, self.suffix,
                             self.write_dropped)
            results += ctx.run_shards(bloom_shard, [task], desc=f"{ctx.name}: {source.shard_id}")
            if previous is not None and exists(previous):
                remove_tree(previous)  # only the latest state is needed to resume
            previous = state
        bits = results[-1]["size_in_bits"]
        hashes = max(1, round(bits / self.capacity * math.log(2)))
        inserted = results[-1]["approx_items"]
        expected = (1 - math.exp(-hashes * inserted / bits)) ** hashes
        extra = {"bloom": {"capacity": self.capacity, "configured_false_positive_rate": self.error_rate,
                           "size_in_bits": bits, "hash_functions": hashes, "approx_items": round(inserted),
                           "expected_false_positive_rate": expected,
                           "over_capacity": inserted > self.capacity}}
        return results, extra, None
