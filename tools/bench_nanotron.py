"""Step time of the nanotron engine (TP=1, TP=2, DP=2, PP=2) beside the embedded engine, same model.

The tiny-r1 pretraining shape (~0.85M parameters, vocabulary 512) at batch 16 x 192 tokens, AdamW,
fp32 on CPU, ``train_step`` as a stage calls it. Each engine starts from the same HF weights;
one torch thread per process by default (the torch engine: one; nanotron at TP=2: two processes
of one), as tiny-r1 sets ``threads = 1``; the first ``--warmup`` steps are dropped and the median
of the rest is reported with the load average, since on a shared machine the load moves the figures.

    uv run python tools/bench_nanotron.py                       # torch, tp1, tp2
    uv run python tools/bench_nanotron.py --layouts tp1 tp2 dp2 pp2 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time

import torch

from llm_core.builtins.losses import cross_entropy

SHAPE = dict(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, num_kv_heads=2)
LAYOUTS = {"torch": None, "tp1": {}, "tp2": {"tp": 2}, "dp2": {"dp": 2}, "pp2": {"pp": 2}}


def weights(root: str) -> str:
    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec, ModelShape
    from llm_torch.tokenizer import train_bpe

    rng = random.Random(0)
    words = [f"{w}{i}" for i, w in enumerate("river city school music water energy market garden".split() * 40)]
    tokenizer = train_bpe((" ".join(rng.choice(words) for _ in range(30)) for _ in range(3000)), vocab_size=512)
    tokenizer.save(os.path.join(root, "tokenizer"))
    engine = build_train_engine(EngineSpec(name="torch"), get_registries(), model=ModelShape(**SHAPE),
                                tokenizer=os.path.join(root, "tokenizer"), max_seq_len=192)
    folder = os.path.join(root, "weights")
    engine.export_hf(folder)
    return folder


def step_times(name: str, options: dict | None, folder: str, steps: int, warmup: int,
               threads: int) -> list[float]:
    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec, OptimizerSpec

    spec = EngineSpec(name="torch") if options is None else EngineSpec(name="nanotron",
                                                                       options={"threads": threads, **options})
    engine = build_train_engine(spec, get_registries(), checkpoint=folder, optimizer=OptimizerSpec(lr=1e-3),
                                total_steps=steps + warmup)
    vocab = engine.tokenizer.vocab_size
    times = []
    for step in range(steps + warmup):
        batch = {"input_ids": torch.randint(3, vocab, (16, 192), generator=torch.Generator().manual_seed(step))}
        start = time.perf_counter()
        engine.train_step(batch, cross_entropy)
        times.append(time.perf_counter() - start)
    return times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layouts", nargs="+", default=["torch", "tp1", "tp2"], choices=sorted(LAYOUTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (torch engine, workers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = weights(tempfile.mkdtemp(prefix="llmt-bench-nanotron-"))
    rows = []
    for layout in args.layouts:
        times = step_times(layout, LAYOUTS[layout], folder, args.steps, args.warmup, args.threads)
        rows.append({"engine": layout, "median_step_s": round(statistics.median(times), 4),
                     "load_average": round(os.getloadavg()[0], 1)})
        print(json.dumps(rows[-1]), flush=True)
    print("| engine | median s / step (batch 16 x 192) | load average |\n|---|---|---|")
    for row in rows:
        print(f"| {row['engine']} | {row['median_step_s']} | {row['load_average']} |")


if __name__ == "__main__":
    main()
