"""The first two MinHash LSH steps as resumable sharded stages.

``minhash_signatures``: one shard per input file; writes each document's sorted shingle set (for
verification later) and its signature, under ``<stage>/<params tag>/``, plus ``index.json``.
``minhash_buckets``: one shard per group of bands; hashes each band into a bucket key, sorts,
and writes the candidate pairs of every bucket holding more than one document.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from llm_core.artifacts import join, read_json, write_json
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_dedup.minhash import MinHasher, band_keys, bucket_pairs, unique_pairs
from llm_dedup.params import MinHashOptions, MinHashParams
from llm_dedup.report import Chart, size_histogram, write_report
from llm_dedup.shingles import shingle_sets
from llm_dedup.storage import (
    Source,
    list_sources,
    load_array,
    read_documents,
    save_array,
    save_arrays,
    write_rejects,
)


class MinHashSignaturesConfig(MinHashOptions):
    reader: str = Field("auto", description="registered reader, or auto (by file suffix)")
    reader_options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(2048, ge=1, description="documents shingled and hashed together")
    score_key: str | None = Field(None, description="metadata field kept for keep = best_score")


@dataclass(frozen=True)
class SignatureTask:
    shard_id: str
    source: Source
    out_dir: str
    params: MinHashParams
    reader_options: dict[str, Any]
    batch_size: int
    score_key: str | None


def signature_shard(task: SignatureTask) -> dict[str, Any]:
    start = time.perf_counter()
    params = task.params
    hasher = MinHasher(params.bands * params.rows, params.seed)  # the permutations the bands use, no more
    rejects: list[dict[str, Any]] = []
    ids: list[str] = []
    scores: list[float | None] = []
    signatures, values, sizes = [], [], []
    batch: list[str] = []

    def flush() -> None:
        sets = shingle_sets(batch, params.shingle, params.ngram, params.lowercase, params.numbers, params.accents)
        signatures.append(hasher.signatures(sets))
        values.append(sets.values)
        sizes.append(sets.sizes())
        batch.clear()

    for doc in read_documents(task.source, task.reader_options, rejects.append):
        ids.append(doc.id)
        if task.score_key is not None:
            scores.append(_score(doc.metadata.get(task.score_key)))
        batch.append(doc.text)
        if len(batch) >= task.batch_size:
            flush()
    if batch or not signatures:
        flush()
    all_sizes = np.concatenate(sizes)
    offsets = np.zeros(len(all_sizes) + 1, dtype=np.int64)
    np.cumsum(all_sizes, out=offsets[1:])
    base = join(task.out_dir, task.shard_id)
    save_arrays(base + ".shingles.npz", values=np.concatenate(values), offsets=offsets)
    save_array(base + ".signatures.npy", np.concatenate(signatures))
    save_array(base + ".empty.npy", np.flatnonzero(all_sizes == 0))
    write_json(base + ".docs.json", {"source": task.source.uri, "ids": ids,
                                     "scores": scores if task.score_key else None})
    write_rejects(task.out_dir, task.shard_id, rejects)
    return {"docs": len(ids), "rejects": len(rejects), "shingles": int(offsets[-1]),
            "empty": int((all_sizes == 0).sum()), "seconds": round(time.perf_counter() - start, 4)}


def _score(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # a missing or non-numeric score ranks last


class MinHashSignaturesStage:
    def __init__(self, config: MinHashSignaturesConfig):
        self.options = config  # a MinHashOptions: the fields that fix the whole run
        self.reader, self.reader_options = config.reader, config.reader_options
        self.batch_size, self.score_key = config.batch_size, config.score_key

    def run(self, ctx: StageContext) -> StageResult:
        params = MinHashParams.resolve(self.options, ctx.seed)
        sources = list_sources(ctx.input("documents"), self.reader)
        out_dir = ctx.path(params.tag)
        tasks = [SignatureTask(s.shard_id, s, out_dir, params, self.reader_options, self.batch_size,
                               self.score_key) for s in sources]
        results = ctx.run_shards(signature_shard, tasks, desc=f"{ctx.name}: signatures")
        offsets = np.concatenate([[0], np.cumsum([r["docs"] for r in results])]).tolist()
        shards = [{"shard_id": s.shard_id, "source": s.uri, "reader": s.reader, "docs": r["docs"],
                   "offset": offsets[i]} for i, (s, r) in enumerate(zip(sources, results, strict=True))]
        write_json(ctx.path("index.json"), {"params": params.to_dict(), "tag": params.tag, "dir": out_dir,
                                            "reader_options": self.reader_options, "shards": shards,
                                            "total_docs": offsets[-1]})
        seconds = sum(r["seconds"] for r in results)
        metrics = {"docs": offsets[-1], "rejects": sum(r["rejects"] for r in results),
                   "empty_docs": sum(r["empty"] for r in results), "bands": params.bands, "rows": params.rows,
                   "docs_per_second_per_worker": round(offsets[-1] / seconds, 1) if seconds else None}
        write_report(ctx.path("report.json"),
                     {**metrics, "params": params.to_dict(), "tag": params.tag, "shards": results},
                     [Chart("documents per shard", "bar", {s["shard_id"]: s["docs"] for s in shards}),
                      Chart("rejects per shard", "bar", {s.shard_id: r["rejects"] for s, r in
                                                         zip(sources, results, strict=True)})])
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"index": ctx.path("index.json"), "signatures": out_dir})


def read_index(signatures_uri: str) -> dict[str, Any]:
    """The ``index.json`` a signatures stage wrote (its folder is the stage input)."""
    index = read_json(join(signatures_uri, "index.json"))
    index["params"] = MinHashParams.from_dict(index["params"])
    return index


# -- buckets -----------------------------------------------------------------------------------


class MinHashBucketsConfig(Config):
    bands_per_task: int = Field(1, ge=1, description="bands handled by one shard of this stage")
    max_bucket_size: int = Field(100, ge=2, description="buckets up to this size emit all their pairs; in "
                                 "a larger one each member is paired with the max_bucket_size - 1 before it")


@dataclass(frozen=True)
class BucketTask:
    shard_id: str
    signature_dir: str
    shards: tuple[tuple[str, int, int], ...]  # (shard id, first global row, docs)
    bands: tuple[int, ...]
    rows: int
    out_uri: str
    max_bucket_size: int


def bucket_shard(task: BucketTask) -> dict[str, Any]:
    """Candidate pairs of a group of bands: every pair of documents that share a bucket (a band
    proves nothing about one pair more than about another), capped in huge buckets."""
    start = time.perf_counter()
    keys: dict[int, list[np.ndarray]] = {b: [] for b in task.bands}
    valid = []
    for shard_id, _, docs in task.shards:
        signatures = load_array(join(task.signature_dir, f"{shard_id}.signatures.npy"))
        empty = load_array(join(task.signature_dir, f"{shard_id}.empty.npy"))
        mask = np.ones(docs, dtype=bool)
        mask[empty] = False  # documents without shingles are no one's near-duplicate
        valid.append(mask)
        for band in task.bands:
            keys[band].append(band_keys(signatures, band, task.rows))
    valid_rows = np.flatnonzero(np.concatenate(valid)) if valid else np.zeros(0, dtype=np.int64)
    pairs, bucket_sizes = [], []
    capped = {"buckets": 0, "pairs_not_emitted": 0}
    for band in task.bands:
        band_pairs, sizes, band_capped = bucket_pairs(np.concatenate(keys[band])[valid_rows], valid_rows,
                                                      task.max_bucket_size)
        pairs.append(band_pairs)
        bucket_sizes.append(sizes)
        capped = {k: capped[k] + band_capped[k] for k in capped}
    merged = unique_pairs(np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64))
    save_array(task.out_uri, merged)
    sizes = np.concatenate(bucket_sizes)
    return {"pairs": len(merged), "buckets_with_duplicates": len(sizes),
            "bucket_sizes": size_histogram(sizes.tolist()), "capped_buckets": capped["buckets"],
            "pairs_not_emitted": capped["pairs_not_emitted"], "seconds": round(time.perf_counter() - start, 4)}


class MinHashBucketsStage:
    def __init__(self, config: MinHashBucketsConfig):
        self.bands_per_task, self.max_bucket_size = config.bands_per_task, config.max_bucket_size

    def run(self, ctx: StageContext) -> StageResult:
        index = read_index(ctx.input("signatures"))
        params: MinHashParams = index["params"]
        shards = tuple((s["shard_id"], s["offset"], s["docs"]) for s in index["shards"])
        out_dir = ctx.path(params.tag)
        groups = [tuple(range(b, min(b + self.bands_per_task, params.bands)))
                  for b in range(0, params.bands, self.bands_per_task)]
        tasks = [BucketTask(f"bands-{g[0]:03d}-{g[-1]:03d}", index["dir"], shards, g, params.rows,
                            join(out_dir, f"pairs-bands-{g[0]:03d}-{g[-1]:03d}.npy"), self.max_bucket_size)
                 for g in groups]
        results = ctx.run_shards(bucket_shard, tasks, desc=f"{ctx.name}: buckets")
        histogram: dict[int, int] = {}
        for r in results:
            for size, count in r["bucket_sizes"].items():
                histogram[int(size)] = histogram.get(int(size), 0) + count
        histogram = dict(sorted(histogram.items()))
        write_json(ctx.path("index.json"), {"tag": params.tag, "pair_files": [t.out_uri for t in tasks]})
        metrics = {"bands": params.bands, "rows": params.rows,
                   "candidate_pairs_before_merge": sum(r["pairs"] for r in results),
                   "shared_buckets": sum(r["buckets_with_duplicates"] for r in results),
                   "max_bucket_size": self.max_bucket_size,
                   "capped_buckets": sum(r["capped_buckets"] for r in results),
                   "pairs_not_emitted_by_cap": sum(r["pairs_not_emitted"] for r in results)}
        write_report(ctx.path("report.json"),
                     {**metrics, "tag": params.tag, "bucket_size_histogram": histogram,
                      "tasks": [{"shard_id": t.shard_id, **{k: v for k, v in r.items() if k != "bucket_sizes"}}
                                for t, r in zip(tasks, results, strict=True)]},
                     [Chart("shared bucket sizes", "hist", histogram, xlabel="documents in bucket"),
                      Chart("candidate pairs per task", "bar", {t.shard_id: r["pairs"]
                                                                for t, r in zip(tasks, results, strict=True)})])
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"index": ctx.path("index.json"), "pairs": out_dir})
