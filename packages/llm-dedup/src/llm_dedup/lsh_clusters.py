"""The last two MinHash LSH steps as resumable sharded stages.

``minhash_clusters``: merges the candidate pairs of all bands, verifies each with the true Jaccard
similarity of the two shingle sets (sharded, resumable; can be switched off), joins the verified
pairs with union-find (connected components) and keeps one document per cluster: the first, or
the best by a metadata score. ``minhash_filter``: one shard per input file, writes kept/dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llm_core.artifacts import join, read_json, write_json
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_dedup.clustering import cluster_quality, component_keepers, keep_rank, star_keepers, union_find_clusters
from llm_dedup.lsh_stages import read_index
from llm_dedup.minhash import unique_pairs
from llm_dedup.report import Chart, size_histogram, snippet, value_histogram, write_report
from llm_dedup.shingles import gather_ranges, pairwise_jaccard
from llm_dedup.storage import (
    Source,
    load_array,
    load_arrays,
    read_documents,
    save_array,
    split_shard,
)

VERIFY_BATCH = 50_000  # pairs compared per vectorized call


class MinHashClustersConfig(Config):
    verify: bool = Field(True, description="check candidates with the true Jaccard of their shingle sets")
    threshold: float | None = Field(None, gt=0, le=1, description="verification threshold; None: the "
                                    "signatures stage's threshold")
    keep: Literal["first", "best_score"] = Field("first", description="which document of a cluster stays")
    clustering: Literal["components", "star"] = Field(
        "components", description="components: union-find of verified pairs (transitive, so it can chain "
        "through pairs below the threshold); star: a document is removed only for a kept document it is "
        "a verified duplicate of")
    verify_tasks: int = Field(4, ge=1, description="shards of the verification step")
    examples: int = Field(5, ge=0, description="removed pairs quoted in the report")


@dataclass(frozen=True)
class VerifyTask:
    shard_id: str
    candidates_uri: str
    part: int
    parts: int
    signature_dir: str
    shards: tuple[tuple[str, int, int], ...]
    out_uri: str


def verify_shard(task: VerifyTask) -> dict[str, Any]:
    """Jaccard similarity of this task's slice of the candidate pairs."""
    start = time.perf_counter()
    candidates = load_array(task.candidates_uri)
    lo, hi = (len(candidates) * task.part) // task.parts, (len(candidates) * (task.part + 1)) // task.parts
    save_array(task.out_uri, pair_jaccard(task.signature_dir, task.shards, candidates[lo:hi]))
    return {"pairs": hi - lo, "seconds": round(time.perf_counter() - start, 4)}


def pair_jaccard(signature_dir: str, shards: tuple[tuple[str, int, int], ...], pairs: np.ndarray) -> np.ndarray:
    """True Jaccard similarity of the shingle sets of each (row, row) pair."""
    needed = np.unique(pairs.ravel())
    values, offsets = _load_sets(signature_dir, shards, needed)
    local = np.searchsorted(needed, pairs)
    similarity = np.empty(len(pairs), dtype=np.float32)
    for b in range(0, len(pairs), VERIFY_BATCH):
        chunk = local[b:b + VERIFY_BATCH]
        similarity[b:b + VERIFY_BATCH] = pairwise_jaccard(values, offsets, chunk[:, 0], values, offsets, chunk[:, 1])
    return similarity


def _load_sets(signature_dir: str, shards: tuple[tuple[str, int, int], ...], rows: np.ndarray):
    """Shingle sets of the given global rows only (sorted), compacted in that order."""
    firsts = np.array([s[1] for s in shards], dtype=np.int64)
    owner = np.searchsorted(firsts, rows, side="right") - 1
    values, sizes = [], []
    for k in np.unique(owner):
        shard_id, first, _ = shards[k]
        stored = load_arrays(join(signature_dir, f"{shard_id}.shingles.npz"))
        local = rows[owner == k] - first
        lengths = stored["offsets"][local + 1] - stored["offsets"][local]
        picked, _ = gather_ranges(stored["values"], stored["offsets"][local], lengths)
        values.append(picked)
        sizes.append(lengths)
    all_sizes = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(all_sizes) + 1, dtype=np.int64)
    np.cumsum(all_sizes, out=offsets[1:])
    return (np.concatenate(values) if values else np.zeros(0, dtype=np.uint32)), offsets


class MinHashClustersStage:
    def __init__(self, config: MinHashClustersConfig):
        self.verify, self.threshold, self.keep = config.verify, config.threshold, config.keep
        self.clustering = config.clustering
        self.verify_tasks, self.examples = config.verify_tasks, config.examples

    def run(self, ctx: StageContext) -> StageResult:
        index = read_index(ctx.input("signatures"))
        params = index["params"]
        threshold = self.threshold if self.threshold is not None else params.threshold
        shards = tuple((s["shard_id"], s["offset"], s["docs"]) for s in index["shards"])
        out_dir = ctx.path(params.tag + ("-verified" if self.verify else "-unverified"))
        pair_files = read_json(join(ctx.input("buckets"), "index.json"))["pair_files"]
        parts = [load_array(f) for f in pair_files]
        candidates = unique_pairs(np.concatenate(parts)) if parts else np.zeros((0, 2), dtype=np.int64)
        similarity = None
        if self.verify and len(candidates):
            similarity = self._verify(ctx, index, shards, candidates, out_dir)
            edges = candidates[similarity >= threshold]
        else:
            edges = candidates
        total = index["total_docs"]
        rank = keep_rank(total, self._scores(index) if self.keep == "best_score" else None)
        if self.clustering == "star":
            keepers = star_keepers(total, edges, rank)
        else:
            keepers = component_keepers(union_find_clusters(total, edges), rank)
        removed = np.flatnonzero(keepers != np.arange(total))
        save_array(join(out_dir, "removed.npy"), np.stack([removed, keepers[removed]], 1))
        save_array(join(out_dir, "duplicate_pairs.npy"), edges)
        write_json(ctx.path("index.json"), {"tag": params.tag, "removed": join(out_dir, "removed.npy"),
                                            "duplicate_pairs": join(out_dir, "duplicate_pairs.npy")})
        quality = cluster_quality(keepers, candidates, similarity, threshold,
                                  lambda pairs: pair_jaccard(index["dir"], shards, pairs))
        report, charts = self._report(index, candidates, similarity, edges, keepers, removed, threshold)
        write_report(ctx.path("report.json"), {**report, **quality}, charts)
        metrics = {k: report[k] for k in ("docs", "candidate_pairs", "candidates_per_doc", "verified_pairs",
                                          "clusters", "removed")}
        metrics["cluster_pair_precision"] = quality["cluster_pair_precision"]
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"index": ctx.path("index.json"), "clusters": out_dir})

    def _verify(self, ctx: StageContext, index: dict[str, Any], shards, candidates: np.ndarray,
                out_dir: str) -> np.ndarray:
        candidates_uri = join(out_dir, "candidates.npy")
        save_array(candidates_uri, candidates)  # the same content on every run: safe to rewrite
        parts = min(self.verify_tasks, len(candidates))
        tasks = [VerifyTask(f"verify-{p:04d}", candidates_uri, p, parts, index["dir"], shards,
                            join(out_dir, f"jaccard-{p:04d}.npy")) for p in range(parts)]
        ctx.run_shards(verify_shard, tasks, desc=f"{ctx.name}: verification")
        return np.concatenate([load_array(t.out_uri) for t in tasks])

    @staticmethod
    def _scores(index: dict[str, Any]) -> np.ndarray:
        scores = []
        for shard in index["shards"]:
            docs = read_json(join(index["dir"], f"{shard['shard_id']}.docs.json"))
            if docs["scores"] is None:
                raise ValueError("keep = \"best_score\" needs the scores: set score_key on the "
                                 "minhash_signatures stage")
            scores.extend(np.nan if s is None else s for s in docs["scores"])
        return np.array(scores, dtype=float)

    def _report(self, index, candidates, similarity, edges, keepers, removed, threshold):
        cluster_sizes = np.bincount(keepers, minlength=len(keepers))
        histogram = size_histogram(cluster_sizes[cluster_sizes > 1].tolist())
        docs = index["total_docs"]
        report = {"docs": docs, "tag": index["tag"], "verify": self.verify, "clustering": self.clustering,
                  "threshold": threshold, "keep": self.keep, "candidate_pairs": len(candidates),
                  "candidates_per_doc": round(len(candidates) / docs, 4) if docs else 0.0,
                  "verified_pairs": len(edges),
                  "rejected_by_verification": len(candidates) - len(edges) if similarity is not None else 0,
                  "clusters": int((cluster_sizes > 1).sum()), "removed": len(removed),
                  "cluster_size_histogram": histogram,
                  "examples": removed_examples(index, removed[:self.examples], keepers, candidates, similarity)}
        charts = [Chart("documents", "bar", {"docs": docs, "candidates": len(candidates),
                                             "verified pairs": len(edges), "removed": len(removed)}),
                  Chart("cluster sizes (clusters > 1)", "hist", histogram, xlabel="documents in cluster")]
        if similarity is not None:
            report["candidate_jaccard_histogram"] = value_histogram(similarity)
            charts.append(Chart("Jaccard of candidate pairs", "hist", report["candidate_jaccard_histogram"],
                                xlabel="true Jaccard"))
        return report, charts


def removed_examples(index, rows: np.ndarray, keepers: np.ndarray, candidates, similarity) -> list[dict]:
    """Removed documents next to the document kept in their place (ids and text snippets)."""
    if not len(rows):
        return []
    wanted = {int(r) for r in rows} | {int(keepers[r]) for r in rows}
    texts = _texts_of_rows(index, wanted)
    lookup = {}
    if similarity is not None:
        lookup = {(int(a), int(b)): float(s) for (a, b), s in zip(candidates, similarity, strict=True)
                  if int(a) in wanted and int(b) in wanted}
    examples = []
    for row in rows:
        keeper = int(keepers[row])
        pair = (min(int(row), keeper), max(int(row), keeper))
        examples.append({"removed": texts[int(row)], "kept": texts[keeper], "jaccard": lookup.get(pair)})
    return examples


def _texts_of_rows(index: dict[str, Any], rows: set[int]) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for shard in index["shards"]:
        first, last = shard["offset"], shard["offset"] + shard["docs"]
        local = sorted(r - first for r in rows if first <= r < last)
        if not local:
            continue
        source = Source(shard["shard_id"], shard["source"], shard["reader"])
        for row, doc in enumerate(read_documents(source, index["reader_options"], lambda _: None)):
            if row in local:
                found[first + row] = {"id": doc.id, "text": snippet(doc.text)}
            if row >= local[-1]:
                break
    return found


# -- filter -------------------------------------------------------------------------------------


class MinHashFilterConfig(Config):
    output_suffix: str = Field(".jsonl.gz", description="kept / dropped file suffix; sets compression")
    write_dropped: bool = Field(True, description="False discards removed documents (counts are kept)")


@dataclass(frozen=True)
class FilterTask:
    shard_id: str
    source: Source
    first: int
    docs: int
    removed_uri: str
    signature_dir: str
    shards: tuple[tuple[str, int, int], ...]
    reader_options: dict[str, Any]
    out_dir: str
    suffix: str
    write_dropped: bool


def filter_shard(task: FilterTask) -> dict[str, Any]:
    removed = load_array(task.removed_uri)
    mine = removed[(removed[:, 0] >= task.first) & (removed[:, 0] < task.first + task.docs)]
    keeper_ids = _ids_of(task.signature_dir, task.shards, mine[:, 1].tolist())
    drops = {int(r) - task.first: {"drop_reason": "near_duplicate", "duplicate_of": keeper_ids[int(k)]}
             for r, k in mine}
    return split_shard(task.source, task.reader_options, task.out_dir, task.suffix, drops, task.write_dropped)


def _ids_of(signature_dir: str, shards: tuple[tuple[str, int, int], ...], rows: list[int]) -> dict[int, str]:
    """Document ids of global rows, read from the signatures stage's per-shard id lists."""
    found: dict[int, str] = {}
    for shard_id, first, docs in shards:
        local = [r for r in rows if first <= r < first + docs]
        if local:
            ids = read_json(join(signature_dir, f"{shard_id}.docs.json"))["ids"]
            found.update({r: ids[r - first] for r in local})
    return found


class MinHashFilterStage:
    def __init__(self, config: MinHashFilterConfig):
        self.output_suffix, self.write_dropped = config.output_suffix, config.write_dropped

    def run(self, ctx: StageContext) -> StageResult:
        index = read_index(ctx.input("signatures"))
        removed_uri = read_json(join(ctx.input("clusters"), "index.json"))["removed"]
        shards = tuple((s["shard_id"], s["offset"], s["docs"]) for s in index["shards"])
        tasks = [FilterTask(s["shard_id"], Source(s["shard_id"], s["source"], s["reader"]), s["offset"], s["docs"],
                            removed_uri, index["dir"], shards, index["reader_options"], ctx.stage_dir,
                            self.output_suffix, self.write_dropped)
                 for s in index["shards"]]
        results = ctx.run_shards(filter_shard, tasks, desc=f"{ctx.name}: filter")
        metrics = {k: sum(r[k] for r in results) for k in ("kept", "dropped", "rejects")}
        examples = [e for r in results for e in r.pop("examples", [])][:10]
        write_report(ctx.path("report.json"),
                     {**metrics, "examples": examples, "shards": results},
                     [Chart("documents", "bar", metrics)])
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"kept": ctx.path("kept"), "dropped": ctx.path("dropped")})
