"""Benchmark: the heuristic chain of llm-data against datatrove's equivalent, side by side.

Chain: url_filter -> language_id -> gopher_quality -> gopher_repetition -> pii, on the noisy
Wikipedia + news corpus (gensim's samples plus seeded noise). Both run on one core, in this
process, over the same JSONL.gz file, reading it and writing kept documents. Reports docs/s per
core (median of --repeats runs), the ratio, keep / drop agreement per filter and for the chain,
and peak memory of llm-data's shard at 1x and 4x the input. Per-core throughput is documents per
CPU-second of the process (steady under a busy machine); wall-clock rates are reported beside it.

    uv run python tools/bench_data.py --copies 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llm_core.builtins.jsonl import JsonlWriter
from llm_core.types import Document
from llm_data.filters.url_filter import load_list
from llm_data.io.readers import MediaWikiReader
from llm_data.noise import add_noise
from llm_data.stages.corpus import GENSIM_NEWS, GENSIM_WIKI, _gensim_file, read_news

CHAIN = [("filters", "url_filter", {}), ("filters", "language_id", {"languages": ["en"], "min_score": 0.65}),
         ("filters", "gopher_quality", {}), ("filters", "gopher_repetition", {}), ("transforms", "pii", {})]


def make_corpus(path: Path, copies: int, seed: int = 0) -> int:
    """The noisy corpus, ``copies`` times over (fresh noise and ids each time)."""
    docs: list[Document] = []
    for copy in range(copies):
        clean = list(MediaWikiReader().read(_gensim_file(GENSIM_WIKI), print)) + read_news(_gensim_file(GENSIM_NEWS))
        for doc in add_noise(clean, 0.3, 0.1, seed + copy):
            doc.id = f"{copy}-{doc.id}"
            docs.append(doc)
    return JsonlWriter().write(str(path), docs)


def timed(fn):
    """Wall and CPU seconds of ``fn()`` (CPU time is what a core spent, whatever else runs)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_ours(source: Path, out_dir: Path) -> tuple[float, float, set[str]]:
    from llm_core.builtins.filter_stage import FilterShardTask, filter_shard

    task = FilterShardTask("bench", str(source), str(out_dir), tuple(CHAIN), "jsonl", {}, 256,
                           ".jsonl", False, None)
    wall, cpu = timed(lambda: filter_shard(task))
    with open(out_dir / "kept" / "bench.jsonl") as handle:
        kept = {json.loads(line)["id"] for line in handle}
    return wall, cpu, kept


class _NumpyScores:
    """fasttext-predict's model with the numpy score arrays datatrove expects."""

    def __init__(self, path: str):
        self.path, self.model = path, None  # loaded on first use: datatrove deep-copies its steps

    def predict(self, text: str, k: int = 1):
        import fasttext.FastText
        import numpy as np

        if self.model is None:
            self.model = fasttext.FastText._FastText(self.path)
        labels, scores = self.model.predict(text, k=k)
        return labels, np.asarray(scores)


def datatrove_steps():
    """datatrove's equivalent steps, with the same lists, model file and thresholds."""
    from datatrove.pipeline.filters import (
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from tldextract import TLDExtract

    from llm_data.filters.language_id import default_model_path

    url = URLFilter(extra_domains=load_list("url_blocklist.txt"), banned_subwords=load_list("url_banned_subwords.txt"),
                    use_integrated_lists=False)
    url.tldextractor = TLDExtract(suffix_list_urls=())  # offline: the bundled public suffix list
    url.banned_subwords_automaton.make_automaton()
    # datatrove checks for the fasttext-numpy2-wheel distribution; both sides run lid.176.ftz
    # through fasttext-predict here, whose scores come back as floats rather than numpy scalars.
    LanguageFilter._requires_dependencies = ["fasteners"]
    lang = LanguageFilter(languages=["en"], language_threshold=0.65)
    lang.model._model = _NumpyScores(default_model_path())
    return [url, lang, GopherQualityFilter(), GopherRepetitionFilter(), PIIFormatter()]


def run_datatrove(source: Path, out_dir: Path) -> tuple[float, float, set[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter as DtWriter

    pipeline = [JsonlReader(str(source.parent), glob_pattern=source.name), *datatrove_steps(),
                DtWriter(str(out_dir), output_filename="kept.jsonl", compression=None)]
    executor = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out_dir / "logs"))
    wall, cpu = timed(executor.run)  # workers=1 runs in this process
    with open(out_dir / "kept.jsonl") as handle:
        kept = {json.loads(line)["id"] for line in handle}
    return wall, cpu, kept


def per_filter_agreement(source: Path) -> dict[str, dict]:
    """Each filter alone on every document, ours against datatrove's: agreement and disagreements."""
    from datatrove.data import Document as DtDocument

    from llm_core.builtins.jsonl import JsonlReader
    from llm_core.plugins import get_registries

    registries = get_registries()
    docs = list(JsonlReader().read(str(source), print))
    ours = {name: registries.filters.build(name, opts) for kind, name, opts in CHAIN if kind == "filters"}
    theirs = dict(zip(ours, datatrove_steps()[:4], strict=True))
    report = {}
    for name, mine in ours.items():
        agree, examples = 0, []
        for doc in docs:
            keep_ours = mine.filter(Document(doc.id, doc.text, dict(doc.metadata))) is None
            verdict = theirs[name].filter(DtDocument(text=doc.text, id=doc.id, metadata=dict(doc.metadata)))
            keep_theirs = verdict if isinstance(verdict, bool) else verdict[0]
            if keep_ours == keep_theirs:
                agree += 1
            elif len(examples) < 10:
                examples.append({"id": doc.id, "noise": doc.metadata.get("noise"), "ours_keep": keep_ours,
                                 "datatrove": verdict if isinstance(verdict, bool) else verdict[1]})
        report[name] = {"agreement": round(agree / len(docs), 4), "disagreements": len(docs) - agree,
                        "examples": examples}
    return report


def peak_memory_mb(source: Path) -> float:
    """Peak RSS of a fresh process running our shard over ``source``: its own VmHWM (ru_maxrss would
    carry over the high-water mark of this process, which forked it)."""
    code = ("import sys, pathlib, tempfile; sys.path.insert(0, 'tools'); import bench_data as b; "
            "b.run_ours(pathlib.Path(sys.argv[1]), pathlib.Path(tempfile.mkdtemp())); "
            "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])")
    done = subprocess.run([sys.executable, "-c", code, str(source)], check=True, capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    return int(done.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=2, help="copies of the noisy corpus (about 580 docs each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    source = work / "corpus" / "docs.jsonl.gz"
    n_docs = make_corpus(source, args.copies)
    print(f"corpus: {n_docs} documents, {source.stat().st_size / 1e6:.1f} MB gzipped", flush=True)
    times: dict[str, dict[str, list[float]]] = {"llm_data": {"wall": [], "cpu": []},
                                                 "datatrove": {"wall": [], "cpu": []}}
    for i in range(args.repeats):  # interleaved, so machine noise hits both alike
        for name, runner in (("llm_data", run_ours), ("datatrove", run_datatrove)):
            wall, cpu, kept = runner(source, work / f"{name}-{i}")
            times[name]["wall"].append(round(wall, 2))
            times[name]["cpu"].append(round(cpu, 2))
            if name == "llm_data":
                kept_ours = kept
            else:
                kept_theirs = kept
        print(f"run {i}: " + ", ".join(f"{n} {t['wall'][-1]:.2f}s wall / {t['cpu'][-1]:.2f}s cpu"
                                      for n, t in times.items()), flush=True)
    rate = {n: {k: round(n_docs / statistics.median(v), 1) for k, v in t.items()} for n, t in times.items()}
    result = {"docs": n_docs,
              "docs_per_cpu_second": {n: r["cpu"] for n, r in rate.items()},
              "docs_per_wall_second": {n: r["wall"] for n, r in rate.items()},
              "speedup_cpu": round(rate["llm_data"]["cpu"] / rate["datatrove"]["cpu"], 2),
              "speedup_wall": round(rate["llm_data"]["wall"] / rate["datatrove"]["wall"], 2),
              "runs_s": times, "kept": {"llm_data": len(kept_ours), "datatrove": len(kept_theirs)},
              "chain_agreement": round(1 - len(kept_ours ^ kept_theirs) / n_docs, 4),
              "per_filter": per_filter_agreement(source)}
    if not args.skip_memory:
        big = work / "corpus4" / "docs.jsonl.gz"
        make_corpus(big, 4 * args.copies, seed=100)
        result["peak_rss_mb"] = {f"{n_docs} docs": round(peak_memory_mb(source), 1),
                                 f"{4 * n_docs} docs": round(peak_memory_mb(big), 1)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
