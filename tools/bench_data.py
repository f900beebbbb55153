"""Benchmark: the heuristic filters of llm-data against datatrove's, side by side, speed and agreement.

Corpora, built here from gensim's offline samples:
  raw     5,000 sections of gensim's Wikipedia sample (raw wikitext: pages cut at headings, then at
          paragraphs into pieces of at most 1,000 characters; a seeded sample)
  clean   the same sections with the markup stripped by gensim's ``filter_wiki``
  noisy   the noisy corpus of llm-data's tests (Wikipedia pages, news, seeded noise and PII), once
The tests hold none of the raw / clean sections as such.

Speed (after a first untimed pass that loads libraries and models on both sides; our word cache
is emptied before every run): the chain url_filter -> language_id -> gopher_quality -> gopher_repetition -> pii, and
datatrove's equivalent (URLFilter with the same lists, LanguageFilter with the same lid.176.ftz,
GopherQualityFilter, GopherRepetitionFilter, PIIFormatter, between datatrove's JSONL reader and
writer) over the same JSONL file, one core each, in this process, interleaved; documents per
CPU-second of the process (median of --repeats), wall-clock rates beside it.

Agreement: keep / drop of the whole chain, and of each filter alone on every document (also
c4_quality and fineweb_quality against datatrove's C4QualityFilter and FineWebQualityFilter);
every disagreement is listed by kind (filter, our reason, datatrove's reason) with its count.
Memory: peak RSS of a fresh process running our chain over the raw sections, 1x and 4x.

    uv run python tools/bench_data.py --repeats 3
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import re
import shutil
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

CHAIN = [("filter", "url_filter", {}), ("filter", "language_id", {"languages": ["en"], "min_score": 0.65}),
         ("filter", "gopher_quality", {}), ("filter", "gopher_repetition", {}), ("transform", "pii", {})]
ALONE = ["url_filter", "language_id", "gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality"]
HEADING = re.compile(r"^=+[^=\n].*?=+[ \t]*$", re.M)
PARAGRAPH = re.compile(r"\n[ \t]*\n")


def cpu_info() -> dict:
    model, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    return {"model": model, "cores": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


# -- corpora -----------------------------------------------------------------------------------


def wiki_sections(count: int, seed: int, max_chars: int = 1000) -> list[Document]:
    """Sections of gensim's Wikipedia sample: pages cut at headings, then at paragraph breaks."""
    pieces = []
    for page in MediaWikiReader().read(_gensim_file(GENSIM_WIKI), print):
        for k, section in enumerate(HEADING.split(page.text)):
            piece = ""
            for paragraph in PARAGRAPH.split(section):
                if piece and len(piece) + len(paragraph) > max_chars:
                    pieces.append((page, k, piece))
                    piece = ""
                piece = piece + "\n\n" + paragraph if piece else paragraph
            if piece.strip():
                pieces.append((page, k, piece))
    chosen = random.Random(seed).sample(range(len(pieces)), min(count, len(pieces)))
    return [Document(f"{pieces[i][0].id}-s{pieces[i][1]}-{i}", pieces[i][2],
                     {"url": f"{pieces[i][0].metadata['url']}#s{pieces[i][1]}", "source": "wikipedia"})
            for i in sorted(chosen)]


def corpora(work: Path, sections: int, seed: int) -> dict[str, Path]:
    from gensim.corpora.wikicorpus import filter_wiki

    raw = wiki_sections(sections, seed)
    clean = [Document(d.id, filter_wiki(d.text), dict(d.metadata)) for d in raw]
    pages = list(MediaWikiReader().read(_gensim_file(GENSIM_WIKI), print)) + read_news(_gensim_file(GENSIM_NEWS))
    four_times = [Document(f"{d.id}-c{c}", d.text, dict(d.metadata)) for c in range(4) for d in raw]
    paths = {}
    for name, docs in (("raw", raw), ("clean", clean), ("noisy", add_noise(pages, 0.3, 0.1, seed)),
                       ("raw_x4", four_times)):
        paths[name] = work / name / "docs.jsonl.gz"
        JsonlWriter().write(str(paths[name]), docs)
    return paths


# -- the two chains ----------------------------------------------------------------------------


def timed(fn):
    """Wall and CPU seconds of ``fn()`` (CPU time is what a core spent, whatever else runs)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_ours(source: Path, out_dir: Path) -> tuple[float, float, set[str]]:
    from llm_core.builtins.filter_stage import FilterShardTask, FilterStageConfig, filter_shard
    from llm_core.refs import ReaderRef

    config = FilterStageConfig(steps=[{kind: name, "options": options} for kind, name, options in CHAIN],
                               output_suffix=".jsonl", write_dropped=False)
    task = FilterShardTask("bench", str(source), ReaderRef(name="jsonl"), str(out_dir), config)
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


def datatrove_filters() -> dict:
    """datatrove's equivalent of each of our filters, with the same lists, model file and thresholds."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
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
    return {"url_filter": url, "language_id": lang, "gopher_quality": GopherQualityFilter(),
            "gopher_repetition": GopherRepetitionFilter(), "c4_quality": C4QualityFilter(),
            "fineweb_quality": FineWebQualityFilter()}


def run_datatrove(source: Path, out_dir: Path) -> tuple[float, float, set[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter as DtWriter

    steps = datatrove_filters()
    pipeline = [JsonlReader(str(source.parent), glob_pattern=source.name),
                *(steps[n] for _, n, _ in CHAIN[:4]), PIIFormatter(),
                DtWriter(str(out_dir), output_filename="kept.jsonl", compression=None)]
    executor = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out_dir / "logs"))
    wall, cpu = timed(executor.run)  # workers=1 runs in this process
    with open(out_dir / "kept.jsonl") as handle:
        kept = {json.loads(line)["id"] for line in handle}
    return wall, cpu, kept


# -- agreement ---------------------------------------------------------------------------------


def per_filter_agreement(source: Path) -> tuple[dict[str, dict], collections.Counter]:
    """Each filter alone on every document, ours against datatrove's; disagreements by kind."""
    from datatrove.data import Document as DtDocument

    from llm_core.builtins.jsonl import JsonlReader
    from llm_core.plugins import get_registries

    registries = get_registries()
    docs = list(JsonlReader().read(str(source), print))
    theirs = datatrove_filters()
    report, kinds = {}, collections.Counter()
    for name in ALONE:
        mine = registries.filters.build(name, next((o for _, n, o in CHAIN if n == name), {}))
        agree = 0
        for doc in docs:
            reason = mine.filter(Document(doc.id, doc.text, dict(doc.metadata)))
            verdict = theirs[name].filter(DtDocument(text=doc.text, id=doc.id, metadata=dict(doc.metadata)))
            keep_theirs = verdict if isinstance(verdict, bool) else verdict[0]
            if (reason is None) == keep_theirs:
                agree += 1
            else:
                kinds[(name, reason or "kept", "kept" if keep_theirs else verdict[1])] += 1
        report[name] = {"agreement": round(agree / len(docs), 4), "disagreements": len(docs) - agree}
    return report, kinds


def peak_memory_mb(source: Path, out_dir: Path) -> float:
    """Peak RSS of a fresh process running our chain over ``source`` (its own VmHWM)."""
    code = ("import sys, pathlib; sys.path.insert(0, 'tools'); import bench_data as b; "
            "b.run_ours(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])); "
            "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])")
    done = subprocess.run([sys.executable, "-c", code, str(source), str(out_dir)], check=True, capture_output=True,
                          text=True, cwd=Path(__file__).parent.parent)
    return int(done.stdout.split()[-1]) / 1024


def speed(source: Path, work: Path, repeats: int, n_docs: int) -> dict:
    """Both chains over ``source``, interleaved. A first untimed pass over a few documents loads
    libraries and models on both sides; our word cache is emptied before every timed run."""
    from llm_data.filters.words import english_tokenizer

    warmup = work / "warmup" / "docs.jsonl.gz"
    if not warmup.exists():
        from llm_core.builtins.jsonl import JsonlReader

        JsonlWriter().write(str(warmup), list(JsonlReader().read(str(source), print))[:50])
        for name, runner in (("llm_data", run_ours), ("datatrove", run_datatrove)):
            runner(warmup, work / f"warmup-{name}")
    times = {"llm_data": {"wall": [], "cpu": []}, "datatrove": {"wall": [], "cpu": []}}
    kept = {}
    for i in range(repeats):  # interleaved, so machine noise hits both alike
        for name, runner in (("llm_data", run_ours), ("datatrove", run_datatrove)):
            english_tokenizer()._cache.clear()
            wall, cpu, kept[name] = runner(source, work / f"{source.parent.name}-{name}-{i}")
            times[name]["wall"].append(round(wall, 2))
            times[name]["cpu"].append(round(cpu, 2))
        print(f"  {source.parent.name} run {i}: " + ", ".join(
            f"{n} {t['wall'][-1]:.2f}s wall / {t['cpu'][-1]:.2f}s cpu" for n, t in times.items()), flush=True)
    rate = {n: {k: round(n_docs / statistics.median(v), 1) for k, v in t.items()} for n, t in times.items()}
    return {"docs_per_cpu_second": {n: r["cpu"] for n, r in rate.items()},
            "docs_per_wall_second": {n: r["wall"] for n, r in rate.items()},
            "speedup_cpu": round(rate["llm_data"]["cpu"] / rate["datatrove"]["cpu"], 2),
            "speedup_wall": round(rate["llm_data"]["wall"] / rate["datatrove"]["wall"], 2),
            "runs_s": times, "kept": {n: len(k) for n, k in kept.items()},
            "chain_agreement": round(1 - len(kept["llm_data"] ^ kept["datatrove"]) / n_docs, 4),
            "chain_disagreements": len(kept["llm_data"] ^ kept["datatrove"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", type=int, default=5000, help="Wikipedia sections in the raw / clean corpora")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpora", default="raw,clean,noisy", help="which corpora to run")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        result = run_all(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    print(markdown(result))


def run_all(args: argparse.Namespace, work: Path) -> dict:
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, avx2={cpu['avx2']}, avx512f={cpu['avx512f']}", flush=True)
    paths = corpora(work, args.sections, args.seed)
    result = {"machine": cpu, "corpora": {}}
    all_kinds = collections.Counter()
    for name, source in paths.items():
        if name not in args.corpora.split(","):
            continue
        with gzip.open(source, "rt") as handle:
            n_docs = sum(1 for _ in handle)
        print(f"{name}: {n_docs} documents, {source.stat().st_size / 1e6:.1f} MB gzipped", flush=True)
        entry = {"docs": n_docs, **speed(source, work, args.repeats if name != "noisy" else 1, n_docs)}
        entry["per_filter"], kinds = per_filter_agreement(source)
        all_kinds.update({(name, *k): v for k, v in kinds.items()})
        result["corpora"][name] = entry
    result["disagreements"] = [{"corpus": c, "filter": f, "llm_data": o, "datatrove": t, "count": n}
                               for (c, f, o, t), n in sorted(all_kinds.items())]
    if not args.skip_memory:
        result["peak_rss_mb"] = {"1x": round(peak_memory_mb(paths["raw"], work / "memory-1x"), 1),
                                 "4x": round(peak_memory_mb(paths["raw_x4"], work / "memory-4x"), 1)}
    return result


def markdown(result: dict) -> str:
    lines = ["| corpus | docs | llm-data docs/CPU-s | datatrove docs/CPU-s | ratio | chain agreement | "
             + " | ".join(ALONE) + " |", "|" + "---|" * (6 + len(ALONE))]
    for name, c in result["corpora"].items():
        lines.append(f"| {name} | {c['docs']:,} | {c['docs_per_cpu_second']['llm_data']} | "
                     f"{c['docs_per_cpu_second']['datatrove']} | {c['speedup_cpu']}x | "
                     f"{100 * c['chain_agreement']:.2f}% ({c['chain_disagreements']}) | "
                     + " | ".join(f"{100 * c['per_filter'][f]['agreement']:.2f}%" for f in ALONE) + " |")
    lines += ["", "| corpus | filter | llm-data | datatrove | count |", "|---|---|---|---|---|"]
    lines += [f"| {d['corpus']} | {d['filter']} | {d['llm_data']} | {d['datatrove']} | {d['count']} |"
              for d in result["disagreements"]] or ["| (none) | | | | |"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
