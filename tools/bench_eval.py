"""Benchmark: the llm-eval contamination filter beside lm-eval's janitor and datatrove's NGramsDecontFilter.

Same documents (windows of about 200 words of real prose from gensim's samples, a share of them
with an eval item planted verbatim or lightly edited: ``llm_eval.synthetic``), same eval items
(lm-eval's MMLU / GSM8K / BBH exemplars and HumanEval, 535 items), 13-grams, one process on one
core, documents already in memory. Each contender runs ``--repeats`` times, interleaved; the
median documents per second is reported, with how many planted documents it found (recall) and
how many clean ones it flagged.

Contenders:
  llm-eval       ContaminationFilter.filter_batch (batches of 256): 13-grams for long items, 8-gram
                 anchors + overlap for short ones
  janitor        lm-eval's Janitor.clean_python (its pure-Python mode: the C++ helper ships as source
                 only), loaded from lm-eval's janitor.py by path (importing lm-eval needs its whole stack)
  janitor_set    the janitor's normalization and word_ngrams, checked against its n-gram set (no
                 index bookkeeping: the cheapest janitor-style check)
  datatrove      NGramsDecontFilter.filter with its English word tokenizer, over an index of the same
                 items written in its hash-file format (its indexer reads tasks from lighteval only)

    uv run python tools/bench_eval.py --docs 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def load_janitor():
    spec = importlib.util.find_spec("lm_eval")
    path = Path(next(iter(spec.submodule_search_locations))) / "decontamination" / "janitor.py"
    module_spec = importlib.util.spec_from_file_location("lm_eval_janitor", path)
    module = importlib.util.module_from_spec(module_spec)
    stderr, sys.stderr = sys.stderr, open("/dev/null", "w")  # noqa: SIM115 - it prints a traceback when C++ is absent
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    return module


def make_ours(items):
    from llm_core.types import Document
    from llm_eval.contamination import _INDEXES, ContaminationConfig, ContaminationFilter
    from llm_eval.index import ContaminationIndex

    config = ContaminationConfig(index="(in memory)")
    _INDEXES.clear()
    from llm_core.artifacts import fingerprint

    _INDEXES[fingerprint({"config": config.model_dump(mode="json"), "inputs": {}})] = ContaminationIndex.build(items)
    filt = ContaminationFilter(config)

    def run(texts):
        flags = []
        for start in range(0, len(texts), 256):
            docs = [Document(str(i), t) for i, t in enumerate(texts[start:start + 256])]
            flags += [r is not None for r in filt.filter_batch(docs)]
        return flags

    return run


def make_janitor(items, mode):
    janitor_module = load_janitor()
    janitor = janitor_module.Janitor(ngram_n=13)
    for item in items:
        janitor.register_contaminant_python(item.text)
    dirt = janitor.dirt_ngrams

    def clean(texts):
        return [janitor.clean_python(t) != [t] for t in texts]

    def set_check(texts):
        grams = janitor_module.word_ngrams
        return [any(g in dirt for g in grams(janitor.normalize_string(t), 13)) for t in texts]

    return clean if mode == "clean" else set_check


def make_datatrove(items, folder: Path):
    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.text import ngrams, simplify_text
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    config = NGramsDecontConfig(n_grams=13)
    tokenizer, hash_func = load_word_tokenizer("en"), create_hash_func(config.hash_config)
    hashes = set()
    for item in items:  # what its indexer's compute_hashes does for a label
        tokens = tokenizer.word_tokenize(simplify_text(item.text, config.norm_config))
        hashes.update(map(hash_func, map(" ".join, ngrams(tokens, config.n_grams))))
    folder.mkdir(parents=True, exist_ok=True)
    np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(folder / "evals.index.hashes")
    filt = NGramsDecontFilter(index_folder=str(folder), config=config)

    def run(texts):
        out = []
        for i, t in enumerate(texts):
            kept = filt.filter(Document(text=t, id=str(i)))
            out.append(kept is not True)
        return out

    return run


def corpus(num_docs: int, fraction: float, seed: int):
    from llm_eval.eval_sets import BUILTINS
    from llm_eval.synthetic import gensim_texts, planted_corpus, windows

    items = [item for name, load in BUILTINS.items() for item in load(name)]
    base = windows(gensim_texts())
    rng = random.Random(seed)
    docs = [base[i % len(base)] for i in range(num_docs)]
    rng.shuffle(docs)
    return items, planted_corpus(docs, items, fraction, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--contaminated", type=float, default=0.05, help="share of documents with a planted item")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="contenders to run")
    args = parser.parse_args()
    items, planted = corpus(args.docs, args.contaminated, args.seed)
    texts = planted.texts
    with tempfile.TemporaryDirectory() as scratch:
        contenders = {"llm-eval": lambda: make_ours(items), "janitor": lambda: make_janitor(items, "clean"),
                      "janitor_set": lambda: make_janitor(items, "set"),
                      "datatrove": lambda: make_datatrove(items, Path(scratch) / "dt-index")}
        names = [n for n in contenders if args.only is None or n in args.only]
        runners = {name: contenders[name]() for name in names}
        rates: dict[str, list[float]] = {n: [] for n in names}
        flags: dict[str, list[bool]] = {}
        for _ in range(args.repeats):
            for name in names:
                start = time.perf_counter()
                flags[name] = runners[name](texts)
                rates[name].append(len(texts) / (time.perf_counter() - start))
    rows = []
    for name in names:
        found = sum(flags[name][d] for d in planted.truth)
        clean_flagged = sum(f for d, f in enumerate(flags[name]) if d not in planted.truth)
        rows.append({"contender": name, "docs_per_s": statistics.median(rates[name]),
                     "min": min(rates[name]), "max": max(rates[name]),
                     "planted_found": f"{found}/{len(planted.truth)}", "clean_flagged": clean_flagged})
    print(f"{len(texts)} documents ({len(planted.truth)} with a planted item), {len(items)} eval items, "
          f"{args.repeats} repeats\n")
    print("| contender | docs/s (median) | min..max | planted found | clean flagged | llm-eval speed-up |")
    print("|---|---|---|---|---|---|")
    ours = next((r["docs_per_s"] for r in rows if r["contender"] == "llm-eval"), None)
    for r in rows:
        ratio = f"{ours / r['docs_per_s']:.1f}x" if ours else "-"
        print(f"| {r['contender']} | {r['docs_per_s']:,.0f} | {r['min']:,.0f}..{r['max']:,.0f} | "
              f"{r['planted_found']} | {r['clean_flagged']} | {ratio} |")
    print("\nrecall by kind of insertion (share of planted documents flagged):\n")
    from llm_eval.synthetic import KINDS

    print("| contender | " + " | ".join(KINDS) + " |\n|---|" + "---|" * len(KINDS))
    for name in names:
        cells = []
        for kind in KINDS:
            docs = [d for d, truth in planted.truth.items() if truth[2] == kind]
            cells.append(f"{sum(flags[name][d] for d in docs) / len(docs):.3f}" if docs else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if "llm-eval" in names:
        from llm_eval.index import ContaminationIndex
        from llm_eval.synthetic import score

        quality = score(ContaminationIndex.build(items), planted)
        print("\nllm-eval, the item it names (precision: flagged planted documents naming the planted item):\n")
        print("| kind | inserted | recall | precision |\n|---|---|---|---|")
        for kind in KINDS:
            q = quality[kind]
            print(f"| {kind} | {q['inserted']} | {q['recall']:.3f} | {q['precision']:.3f} |")
        print(f"| clean | {quality['clean']['documents']} documents | flagged: {quality['clean']['flagged']} | |")
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
