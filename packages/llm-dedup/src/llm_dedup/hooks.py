"""The package's plugin surface: registers the dedup stages (heavy imports stay inside)."""

from __future__ import annotations

from typing import Any

from llm_core.hookspecs import hookimpl


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_dedup.lsh_clusters import (
        MinHashClustersConfig,
        MinHashClustersStage,
        MinHashFilterConfig,
        MinHashFilterStage,
    )
    from llm_dedup.lsh_stages import (
        MinHashBucketsConfig,
        MinHashBucketsStage,
        MinHashSignaturesConfig,
        MinHashSignaturesStage,
    )

    registry.add("minhash_signatures", MinHashSignaturesStage, config=MinHashSignaturesConfig,
                 inputs=("documents",), summary="MinHash step 1: shingle sets and signatures per input file")
    registry.add("minhash_buckets", MinHashBucketsStage, config=MinHashBucketsConfig, inputs=("signatures",),
                 summary="MinHash step 2: LSH band buckets -> candidate pairs, one shard per band group")
    registry.add("minhash_clusters", MinHashClustersStage, config=MinHashClustersConfig,
                 inputs=("signatures", "buckets"),
                 summary="MinHash step 3: true-Jaccard verification, union-find, one kept per cluster")
    registry.add("minhash_filter", MinHashFilterStage, config=MinHashFilterConfig,
                 inputs=("signatures", "clusters"), summary="MinHash step 4: write kept / dropped documents")
    from llm_dedup.exact import ExactDedupConfig, ExactDedupStage

    registry.add("exact_dedup", ExactDedupStage, config=ExactDedupConfig, inputs=("documents",),
                 summary="drop exact duplicates of normalized text (hash, or streaming Bloom filter)")
    from llm_dedup.semantic import SemDedupConfig, SemDedupStage

    registry.add("semdedup", SemDedupStage, config=SemDedupConfig, inputs=("documents",),
                 summary="SemDeDup: embeddings, k-means, within-cluster cosine duplicates (llm-dedup[semantic])")
    from llm_dedup.corpus_stage import NearDuplicateTextConfig, NearDuplicateTextStage

    registry.add("near_duplicate_text", NearDuplicateTextStage, config=NearDuplicateTextConfig,
                 summary="real sentences with near-duplicates injected at known Jaccard (+ truth.jsonl)")
    from llm_dedup.charts_stage import DedupChartsStage

    registry.add("dedup_charts", DedupChartsStage, optional_inputs=("*",),
                 summary="PNG charts of the reports of the input stages, drawn once (llm-dedup[charts])")
