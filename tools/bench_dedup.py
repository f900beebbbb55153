"""Benchmark: MinHash dedup end to end, llm-dedup side by side with datasketch and datatrove.

Corpus, built here from offline real text with a seed: documents of 100-400 words assembled from
real sentences (gensim's bundled Lee news corpus and Wikipedia sample), 10% of them near-duplicates
of another document, edited until the exact word-5-gram Jaccard falls to a target drawn from
0.5-1.0; an original gets 1 to ``--max-copies`` (3) such copies, so buckets of three or more
documents hold pairs above and below the threshold side by side. Ground truth: every pair at
Jaccard >= 0.8, found exactly over all pairs (``llm_dedup.evaluation.exact_duplicate_pairs``), not
only the injected ones. The tests use other corpora (other seeds, sizes and duplicate shares).

Every system gets the same word 5-gram shingles, num_perm and bands x rows: those llm-dedup picks
for a recall target (a pair at Jaccard 0.8 becomes a candidate with probability 0.99). Each runs
in its own subprocess, from the JSONL shards on disk to duplicate clusters, one worker each
(``--workers``), systems alternating within each repeat. The parent polls the process tree's
resident memory and scores the clusters against the truth.

Systems:
  ours            the four llm-dedup stages, verification on, clusters = connected components
  ours_star       the same, star clustering (a document goes only for a kept duplicate: no chaining)
  ours_noverify   the same as ours, verification off
  datasketch      MinHash.update per shingle, MinHashLSH.insert / query, then union-find
  datasketch_bulk MinHash.bulk + LeanMinHash, an LSH insertion session, query, union-find
  datatrove       its four-step MinHash pipeline (LocalPipelineExecutor), its own normalization and
                  spaCy word tokenizer

Columns: candidates per document (pairs the LSH step hands on); pair precision / recall (of the
pairs the system declares duplicates itself: our verified pairs, datasketch's query results);
cluster-pair precision / recall (over all pairs sharing a cluster: chaining lowers the precision); removal
precision (removed documents at >= 0.8 to the one kept for them); residual pairs (true pairs
left with both documents kept).

    uv sync --compile-bytecode
    uv run python tools/bench_dedup.py --docs 10000 --repeats 3 --once datasketch,datatrove \
        --full-docs 100000 --full-repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NGRAM, THRESHOLD, NUM_PERM, RECALL_TARGET, SHARDS = 5, 0.8, 96, 0.99, 8
START_METHOD = os.environ.get("BENCH_START_METHOD", "spawn")


def cpu_info() -> dict:
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


def bands_rows() -> tuple[int, int]:
    from llm_dedup.minhash import recall_target_bands

    return recall_target_bands(THRESHOLD, NUM_PERM, RECALL_TARGET)


# -- corpus ------------------------------------------------------------------------------------


def corpus_dir(work: Path, docs: int, seed: int, max_copies: int) -> Path:
    """Generate (once) ``docs`` documents as JSONL shards, plus the exact pairs at >= THRESHOLD."""
    from llm_dedup.evaluation import exact_duplicate_pairs, gensim_sentences, near_duplicate_corpus

    folder = work / f"corpus-{docs}-s{seed}-c{max_copies}"
    if (folder / "truth.json").exists():
        return folder
    started = time.perf_counter()
    corpus = near_duplicate_corpus(gensim_sentences(), docs, duplicate_fraction=0.1, seed=seed,
                                   max_copies=max_copies)
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    per = -(-docs // SHARDS)
    for k in range(SHARDS):
        with open(folder / "docs" / f"part-{k:02d}.jsonl", "w", encoding="utf-8") as handle:
            rows = range(k * per, min(docs, (k + 1) * per))
            handle.writelines(json.dumps({"id": f"doc-{i}", "text": corpus.texts[i]}) + "\n" for i in rows)
    truth = exact_duplicate_pairs(corpus.texts, THRESHOLD, NGRAM)
    injected = sum(s >= THRESHOLD for _, _, s in corpus.pairs)
    (folder / "truth.json").write_text(json.dumps({"pairs": truth, "injected_at_threshold": injected}))
    print(f"corpus {docs} docs: {len(truth)} true pairs ({injected} injected), "
          f"{time.perf_counter() - started:.0f} s to build", flush=True)
    return folder


def read_texts(docs_dir: Path) -> list[str]:
    texts = []
    for f in sorted(docs_dir.glob("*.jsonl")):
        with open(f, encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for line in handle]
    return texts


# -- systems (run in a child process) -------------------------------------------------------------


def run_ours(docs_dir: Path, scratch: Path, workers: int, verify: bool, clustering: str) -> dict:
    import numpy as np

    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    executor = {"kind": "local", "workers": workers, "start_method": START_METHOD}
    recipe = {"name": "bench", "seed": 1, "executor": executor,
              "stages": [
                  {"name": "signatures", "kind": "minhash_signatures", "inputs": {"documents": str(docs_dir)},
                   "num_perm": NUM_PERM, "recall_target": RECALL_TARGET, "ngram": NGRAM, "threshold": THRESHOLD},
                  {"name": "buckets", "kind": "minhash_buckets", "inputs": {"signatures": "signatures"},
                   "bands_per_task": 4},
                  {"name": "clusters", "kind": "minhash_clusters", "verify": verify, "clustering": clustering,
                   "verify_tasks": workers, "inputs": {"signatures": "signatures", "buckets": "buckets"}},
                  {"name": "dedup", "kind": "minhash_filter", "output_suffix": ".jsonl",
                   "inputs": {"signatures": "signatures", "clusters": "clusters"}}]}
    host = get_host()
    PipelineRunner(validate_recipe(recipe, host.registries, host), str(scratch), host).run()
    index = json.loads((scratch / "clusters" / "index.json").read_text())
    clusters: dict[int, list[int]] = {}
    for row, keeper in np.load(index["removed"]).tolist():
        clusters.setdefault(keeper, [keeper]).append(row)
    report = json.loads((scratch / "clusters" / "report.json").read_text())
    return {"clusters": list(clusters.values()), "pairs": np.load(index["duplicate_pairs"]).tolist(),
            "candidates": report["candidate_pairs"]}


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
    return [g for g in groups.values() if len(g) > 1]  # rows ascending: the first is kept


def run_datasketch(docs_dir: Path, bulk: bool) -> dict:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    texts = read_texts(docs_dir)
    lsh = MinHashLSH(num_perm=NUM_PERM, params=bands_rows())
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
    pairs = sorted({(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i})
    return {"clusters": _clusters_from_pairs(len(texts), pairs), "pairs": pairs, "candidates": len(pairs)}


def run_datatrove(docs_dir: Path, scratch: Path, workers: int) -> dict:
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

    bands, rows = bands_rows()
    config = MinhashConfig(n_grams=NGRAM, num_buckets=bands, hashes_per_bucket=rows, seed=1)
    files = len(list(docs_dir.glob("*.jsonl")))
    logs = str(scratch / "logs")
    signatures = LocalPipelineExecutor(
        [JsonlReader(str(docs_dir)), MinhashDedupSignature(output_folder=str(scratch / "sigs"), config=config)],
        tasks=files, workers=workers, logging_dir=logs + "/1")
    buckets = LocalPipelineExecutor(
        [MinhashDedupBuckets(input_folder=str(scratch / "sigs"), output_folder=str(scratch / "buckets"),
                             config=config)],
        tasks=bands, workers=workers, logging_dir=logs + "/2", depends=signatures)
    clusters = LocalPipelineExecutor(
        [MinhashDedupCluster(input_folder=str(scratch / "buckets"), output_folder=str(scratch / "remove"),
                             config=config, save_cluster_id=True)],
        tasks=1, logging_dir=logs + "/3", depends=buckets)
    filtered = LocalPipelineExecutor(
        [JsonlReader(str(docs_dir)),
         MinhashDedupFilter(input_folder=str(scratch / "remove"), load_cluster_ids=True,
                            exclusion_writer=JsonlWriter(str(scratch / "removed"), compression=None)),
         JsonlWriter(str(scratch / "kept"), compression=None)],
        tasks=files, workers=workers, logging_dir=logs + "/4", depends=clusters)
    filtered.run()
    groups: dict[int, list[int]] = {}
    for f in sorted((scratch / "kept").glob("*.jsonl")) + sorted((scratch / "removed").glob("*.jsonl")):
        with open(f, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                cluster = record["metadata"].get("minhash_cluster_id", -1)
                if cluster != -1:
                    groups.setdefault(cluster, []).append(int(record["id"].split("-")[1]))
    return {"clusters": [sorted(g) for g in groups.values() if len(g) > 1], "pairs": None, "candidates": None}


def child(system: str, docs_dir: Path, out: Path, workers: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-{system}-", dir=out.parent))
    start = time.perf_counter()
    if system in ("ours", "ours_star", "ours_noverify"):
        result = run_ours(docs_dir, scratch, workers, verify=system != "ours_noverify",
                          clustering="star" if system == "ours_star" else "components")
    elif system in ("datasketch", "datasketch_bulk"):
        result = run_datasketch(docs_dir, bulk=system == "datasketch_bulk")
    elif system == "datatrove":
        result = run_datatrove(docs_dir, scratch, workers)
    else:
        raise SystemExit(f"unknown system {system!r}")
    seconds = time.perf_counter() - start
    shutil.rmtree(scratch, ignore_errors=True)
    out.write_text(json.dumps({"seconds": seconds, **result}))


# -- parent: run, measure, score ------------------------------------------------------------------


def measure(system: str, folder: Path, work: Path, workers: int) -> dict:
    """Run one system in a subprocess; wall time inside it, peak summed RSS of its process tree."""
    import psutil

    out = work / f"result-{system}-{os.getpid()}-{time.time_ns()}.json"
    log = out.with_suffix(".log")
    with open(log, "w") as handle:  # datatrove logs every task: keep it out of the table
        proc = subprocess.Popen([sys.executable, __file__, "child", system, str(folder / "docs"), str(out),
                                 str(workers)], stdout=handle, stderr=subprocess.STDOUT)
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
        raise RuntimeError(f"{system} failed with exit code {code}:\n" + log.read_text()[-3000:])
    result = json.loads(out.read_text())
    out.unlink()
    log.unlink()
    return {**result, "peak_rss_mb": peak / 2**20}


def score(run: dict, folder: Path, docs: int) -> dict:
    from llm_dedup.evaluation import score_dedup

    truth = [(a, b) for a, b, _ in json.loads((folder / "truth.json").read_text())["pairs"]]
    s = score_dedup(run["clusters"], truth)
    true_set = set(truth)
    pair_precision = pair_recall = None
    if run["pairs"] is not None:
        pairs = {tuple(p) for p in run["pairs"]}
        pair_precision = round(len(pairs & true_set) / len(pairs), 4) if pairs else 1.0
        pair_recall = round(len(pairs & true_set) / len(true_set), 4) if true_set else 1.0
    return {"candidates_per_doc": round(run["candidates"] / docs, 3) if run["candidates"] is not None else None,
            "pair_precision": pair_precision, "pair_recall": pair_recall,
            "cluster_pair_precision": round(s.cluster_pair_precision, 4),
            "cluster_pair_recall": round(s.cluster_pair_recall, 4), "removal_precision": round(s.removal_precision, 4),
            "residual_pairs": s.residual_pairs, "true_pairs": s.true_pairs, "predicted_pairs": s.predicted_pairs}


def bench(docs: int, systems: list[str], repeats: int, work: Path, seed: int, workers: int, max_copies: int,
          once: frozenset[str] = frozenset()) -> dict:
    folder = corpus_dir(work, docs, seed, max_copies)
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    for r in range(repeats):  # alternating: machine noise hits every system alike
        for system in systems:
            if r and system in once:
                continue
            runs[system].append(measure(system, folder, work, workers))
            print(f"  {docs:>7} {system:<16} run {r + 1}: {runs[system][-1]['seconds']:.1f} s, "
                  f"{runs[system][-1]['peak_rss_mb']:.0f} MiB", flush=True)
    rows = {}
    for system, done in runs.items():
        seconds = statistics.median(r["seconds"] for r in done)
        rows[system] = {"docs": docs, "runs_seconds": [round(r["seconds"], 2) for r in done],
                        "median_seconds": round(seconds, 2), "docs_per_second": round(docs / seconds, 1),
                        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in done)), **score(done[0], folder, docs)}
    if "ours" in rows:
        for row in rows.values():
            row["ours_speedup"] = round(rows["ours"]["docs_per_second"] / row["docs_per_second"], 2)
    return rows


COLUMNS = [("docs", "docs"), ("system", "system"), ("median_seconds", "median s"), ("docs_per_second", "docs/s"),
           ("ours_speedup", "ours vs it"), ("peak_rss_mb", "peak MiB"), ("candidates_per_doc", "cand./doc"),
           ("pair_precision", "pair prec."), ("pair_recall", "pair recall"),
           ("cluster_pair_precision", "cluster-pair prec."), ("cluster_pair_recall", "cluster-pair recall"),
           ("removal_precision", "removal prec."), ("residual_pairs", "residual")]


def markdown(results: dict) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for size, rows in results["sizes"].items():
        for system, row in rows.items():
            cells = [size if key == "docs" else system if key == "system" else row.get(key) for key, _ in COLUMNS]
            lines.append("| " + " | ".join("" if c is None else f"{c:,}" if isinstance(c, int) else str(c)
                                           for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000, help="size where every system runs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per system at --docs (median)")
    parser.add_argument("--systems", default="ours,ours_star,ours_noverify,datasketch,datasketch_bulk,datatrove")
    parser.add_argument("--full-docs", type=int, default=100_000, help="second size (0: skip)")
    parser.add_argument("--full-repeats", type=int, default=1)
    parser.add_argument("--full-systems", default="ours,ours_star,datasketch_bulk")
    parser.add_argument("--once", default="", help="systems run only once at --docs (the slow peers)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per system")
    parser.add_argument("--seed", type=int, default=2024, help="corpus seed")
    parser.add_argument("--max-copies", type=int, default=3, help="near-duplicates per original, at most")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "bench_dedup"))
    parser.add_argument("--out", default="bench_dedup.json")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cpu = cpu_info()
    bands, rows = bands_rows()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, avx2={cpu['avx2']}, avx512f={cpu['avx512f']}; "
          f"num_perm {NUM_PERM}, {bands} bands x {rows} rows (recall target {RECALL_TARGET} at {THRESHOLD}), "
          f"{args.workers} worker(s) per system", flush=True)
    results = {"machine": cpu, "settings": {"num_perm": NUM_PERM, "bands": bands, "rows": rows, "ngram": NGRAM,
                                            "threshold": THRESHOLD, "recall_target": RECALL_TARGET,
                                            "shards": SHARDS, "workers": args.workers, "seed": args.seed,
                                            "max_copies": args.max_copies},
               "sizes": {}}
    results["sizes"][str(args.docs)] = bench(args.docs, args.systems.split(","), args.repeats, work, args.seed,
                                             args.workers, args.max_copies,
                                             frozenset(filter(None, args.once.split(","))))
    if args.full_docs:
        results["sizes"][str(args.full_docs)] = bench(args.full_docs, args.full_systems.split(","),
                                                      args.full_repeats, work, args.seed, args.workers,
                                                      args.max_copies)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
