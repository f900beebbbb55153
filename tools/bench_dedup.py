"""Benchmark: MinHash dedup end to end, llm-dedup side by side with datasketch and datatrove.

Same documents (real sentences from gensim's bundled corpora, 100-400 words, 10% near-duplicates
injected at exact Jaccard 0.5-1.0), same word 5-gram shingles, same num_perm (120) and bands
(20 x 6), threshold 0.8. Each system runs in its own subprocess, from the JSONL shards on disk to
duplicate clusters; the parent polls the process tree's resident memory (sum over processes)
and scores the clusters: pair precision (share of co-clustered pairs whose exact Jaccard reaches
0.8) and recall (share of true pairs co-clustered).

Systems:
  ours            the four llm-dedup stages (local executor, 2 workers), verification on
  ours_noverify   the same, verification off
  ours_wide       ours with the same 120 permutations as 24 bands x 5 rows (more candidates, verified)
  datasketch      MinHash.update per shingle, MinHashLSH.insert / query, then union-find
  datasketch_bulk MinHash.bulk + LeanMinHash, an LSH insertion session, query, union-find
  datatrove       its four-step MinHash pipeline (LocalPipelineExecutor, 2 workers), English
                  word tokenizer (spaCy's rule-based one, no model) after its text simplification

    uv run python tools/bench_dedup.py --peer-docs 10000 --full-docs 100000 --memory-docs 400000

BENCH_START_METHOD=fork makes the local executor fork its workers instead of spawning them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NUM_PERM, BANDS, ROWS, NGRAM, THRESHOLD, SHARDS, WORKERS = 120, 20, 6, 5, 0.8, 8, 2
# Verification removes LSH's false positives, so the same 120 permutations can be cut into more,
# shorter bands (a lower LSH threshold) for fewer misses at no cost in precision.
WIDE_BANDS, WIDE_ROWS = 24, 5
START_METHOD = os.environ.get("BENCH_START_METHOD", "spawn")


# -- corpus --------------------------------------------------------------------------------------


def corpus_dir(work: Path, docs: int) -> Path:
    """Generate (once) a corpus of ``docs`` documents as JSONL shards plus its ground truth."""
    from llm_dedup.evaluation import gensim_sentences, near_duplicate_corpus

    folder = work / f"corpus-{docs}"
    if (folder / "truth.json").exists():
        return folder
    corpus = near_duplicate_corpus(gensim_sentences(), docs, duplicate_fraction=0.1, seed=docs)
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    per = -(-docs // SHARDS)
    for k in range(SHARDS):
        with open(folder / "docs" / f"part-{k:02d}.jsonl", "w", encoding="utf-8") as handle:
            rows = range(k * per, min(docs, (k + 1) * per))
            handle.writelines(json.dumps({"id": f"doc-{i}", "text": corpus.texts[i]}) + "\n" for i in rows)
    (folder / "truth.json").write_text(json.dumps(corpus.pairs))
    return folder


def read_texts(docs_dir: Path) -> list[str]:
    texts = []
    for f in sorted(docs_dir.glob("*.jsonl")):
        with open(f, encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for line in handle]
    return texts


# -- systems (run in a child process) -------------------------------------------------------------


def run_ours(docs_dir: Path, scratch: Path, verify: bool, bands: int = BANDS, rows: int = ROWS) -> list[list[int]]:
    import numpy as np

    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    executor = {"kind": "local", "workers": WORKERS, "start_method": START_METHOD}
    recipe = {"name": "bench", "seed": 1, "executor": executor,
              "stages": [
                  {"name": "signatures", "kind": "minhash_signatures", "inputs": {"documents": str(docs_dir)},
                   "num_perm": NUM_PERM, "bands": bands, "rows": rows, "ngram": NGRAM, "threshold": THRESHOLD},
                  # Bucketing and verification are light: one task each, which the local executor
                  # runs in the driver process rather than starting a worker pool for them.
                  {"name": "buckets", "kind": "minhash_buckets", "inputs": {"signatures": "signatures"},
                   "bands_per_task": bands},
                  {"name": "clusters", "kind": "minhash_clusters", "verify": verify, "verify_tasks": 1,
                   "inputs": {"signatures": "signatures", "buckets": "buckets"}},
                  {"name": "dedup", "kind": "minhash_filter", "output_suffix": ".jsonl",
                   "inputs": {"signatures": "signatures", "clusters": "clusters"}}]}
    host = get_host()
    PipelineRunner(validate_recipe(recipe, host.registries, host), str(scratch), host).run()
    removed_uri = json.loads((scratch / "clusters" / "index.json").read_text())["removed"]
    clusters: dict[int, list[int]] = {}
    for row, keeper in np.load(removed_uri).tolist():
        clusters.setdefault(keeper, [keeper]).append(row)
    return list(clusters.values())


def _shingles(text: str) -> list[bytes]:
    from llm_dedup.evaluation import shingle_set

    return [" ".join(s).encode() for s in shingle_set(text, NGRAM)]


def _clusters_from_pairs(count: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    labels = connected_components(graph, directed=False)[1]
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(row)
    return [g for g in groups.values() if len(g) > 1]


def run_datasketch(docs_dir: Path, bulk: bool) -> list[list[int]]:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    texts = read_texts(docs_dir)
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    if bulk:
        sketches = [LeanMinHash(m) for m in MinHash.bulk((_shingles(t) for t in texts), num_perm=NUM_PERM, seed=1)]
        with lsh.insertion_session() as session:
            for i, m in enumerate(sketches):
                session.insert(i, m)
    else:
        sketches = []
        for i, text in enumerate(texts):
            m = MinHash(num_perm=NUM_PERM, seed=1)
            for shingle in _shingles(text):
                m.update(shingle)
            lsh.insert(i, m)
            sketches.append(m)
    pairs = [(i, j) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i]
    return _clusters_from_pairs(len(texts), pairs)


def run_datatrove(docs_dir: Path, scratch: Path) -> list[list[int]]:
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=1)
    files = len(list(docs_dir.glob("*.jsonl")))
    logs = str(scratch / "logs")
    signatures = LocalPipelineExecutor(
        [JsonlReader(str(docs_dir)), MinhashDedupSignature(output_folder=str(scratch / "sigs"), config=config)],
        tasks=files, workers=WORKERS, logging_dir=logs + "/1")
    buckets = LocalPipelineExecutor(
        [MinhashDedupBuckets(input_folder=str(scratch / "sigs"), output_folder=str(scratch / "buckets"),
                             config=config)],
        tasks=BANDS, workers=WORKERS, logging_dir=logs + "/2", depends=signatures)
    clusters = LocalPipelineExecutor(
        [MinhashDedupCluster(input_folder=str(scratch / "buckets"), output_folder=str(scratch / "remove"),
                             config=config, save_cluster_id=True)],
        tasks=1, logging_dir=logs + "/3", depends=buckets)
    filtered = LocalPipelineExecutor(
        [JsonlReader(str(docs_dir)),
         MinhashDedupFilter(input_folder=str(scratch / "remove"), load_cluster_ids=True,
                            exclusion_writer=JsonlWriter(str(scratch / "removed"), compression=None)),
         JsonlWriter(str(scratch / "kept"), compression=None)],
        tasks=files, workers=WORKERS, logging_dir=logs + "/4", depends=clusters)
    filtered.run()
    groups: dict[int, list[int]] = {}
    for f in sorted((scratch / "kept").glob("*.jsonl")) + sorted((scratch / "removed").glob("*.jsonl")):
        with open(f, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                cluster = record["metadata"].get("minhash_cluster_id", -1)
                if cluster != -1:
                    groups.setdefault(cluster, []).append(int(record["id"].split("-")[1]))
    return [g for g in groups.values() if len(g) > 1]


def child(system: str, docs_dir: Path, out: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-{system}-", dir=out.parent))
    start = time.perf_counter()
    if system in ("ours", "ours_noverify"):
        clusters = run_ours(docs_dir, scratch, verify=system == "ours")
    elif system == "ours_wide":
        clusters = run_ours(docs_dir, scratch, verify=True, bands=WIDE_BANDS, rows=WIDE_ROWS)
    elif system in ("datasketch", "datasketch_bulk"):
        clusters = run_datasketch(docs_dir, bulk=system == "datasketch_bulk")
    elif system == "datatrove":
        clusters = run_datatrove(docs_dir, scratch)
    else:
        raise SystemExit(f"unknown system {system!r}")
    seconds = time.perf_counter() - start
    out.write_text(json.dumps({"seconds": seconds, "clusters": clusters}))


# -- parent: run, measure, score ------------------------------------------------------------------


def measure(system: str, folder: Path, work: Path) -> dict:
    """Run one system in a subprocess; wall time inside it, peak summed RSS of its process tree."""
    import psutil

    out = work / f"result-{system}-{os.getpid()}-{time.time_ns()}.json"
    proc = subprocess.Popen([sys.executable, __file__, "child", system, str(folder / "docs"), str(out)])
    watched = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [watched] + watched.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    code = proc.wait()
    done.set()
    thread.join()
    if code != 0:
        raise RuntimeError(f"{system} failed with exit code {code}")
    result = json.loads(out.read_text())
    out.unlink()
    return {"seconds": result["seconds"], "peak_rss_mb": peak / 2**20, "clusters": result["clusters"]}


def score(clusters: list[list[int]], folder: Path) -> dict:
    from llm_dedup.evaluation import cluster_pairs, score_pairs

    texts = read_texts(folder / "docs")
    truth = [tuple(p) for p in json.loads((folder / "truth.json").read_text())]
    s = score_pairs(cluster_pairs(clusters), texts, truth, THRESHOLD, NGRAM)
    return {"precision": round(s.precision, 4), "recall": round(s.recall, 4), "predicted_pairs": s.predicted_pairs,
            "true_pairs": s.true_pairs}


def bench(docs: int, systems: list[str], repeats: int, work: Path) -> dict:
    folder = corpus_dir(work, docs)
    rows = {}
    for system in systems:
        runs = []
        for r in range(repeats):
            runs.append(measure(system, folder, work))
            print(f"  {docs:>7} {system:<16} run {r + 1}: {runs[-1]['seconds']:.1f} s, "
                  f"{runs[-1]['peak_rss_mb']:.0f} MiB", flush=True)
        seconds = statistics.median(r["seconds"] for r in runs)
        rows[system] = {"docs": docs, "runs_seconds": [round(r["seconds"], 2) for r in runs],
                        "median_seconds": round(seconds, 2), "docs_per_second": round(docs / seconds, 1),
                        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)), **score(runs[0]["clusters"], folder)}
    if "ours" in rows:
        for row in rows.values():
            row["ours_speedup"] = round(rows["ours"]["docs_per_second"] / row["docs_per_second"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-docs", type=int, default=10_000, help="size where every system runs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per system at --peer-docs (median)")
    parser.add_argument("--full-docs", type=int, default=100_000, help="size for ours and datasketch bulk")
    parser.add_argument("--full-repeats", type=int, default=1)
    parser.add_argument("--full-systems", default="ours,datasketch_bulk", help="systems run at --full-docs")
    parser.add_argument("--memory-docs", type=int, default=400_000, help="size for ours only (memory growth)")
    parser.add_argument("--systems", default="ours,ours_noverify,datasketch,datasketch_bulk,datatrove",
                        help="systems run at --peer-docs")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "bench_dedup"))
    parser.add_argument("--out", default="bench_dedup.json")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "workers": WORKERS},
               "settings": {"num_perm": NUM_PERM, "bands": BANDS, "rows": ROWS, "ngram": NGRAM,
                            "threshold": THRESHOLD, "shards": SHARDS, "wide": [WIDE_BANDS, WIDE_ROWS]}}
    if args.peer_docs:
        results[str(args.peer_docs)] = bench(args.peer_docs, args.systems.split(","), args.repeats, work)
    if args.full_docs:
        results[str(args.full_docs)] = bench(args.full_docs, args.full_systems.split(","), args.full_repeats, work)
    if args.memory_docs:
        results[str(args.memory_docs)] = bench(args.memory_docs, ["ours"], 1, work)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
