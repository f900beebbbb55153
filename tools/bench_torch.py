"""Benchmark llm-torch against transformers, side by side in one run, on the same model shapes.

Training: tokens/s of forward + backward + AdamW (fp32, clipping) at batch x 256 tokens: llm-torch
through ``TorchEngine.train_step`` as stages use it (fused AdamW), transformers through the usual
loop with ``torch.optim.AdamW(foreach=True)``.
Generation: new tokens/s of sampling 128 tokens for a batch of 8 prompts, with each library's cache:
llm-torch through ``TorchEngine.generate`` as stages use it. The engine prepares its decoding copy
of the weights (fused, packed: ``llm_torch.decode``) once and keeps it while the weights are
unchanged, as evaluation does from batch to batch; so the figure leaves that preparation out. An RL
rollout, whose weights change at every step, pays it once per call: the line after each generation
row gives its cost and the rate and ratio with it paid in every call.
Each measurement alternates the two libraries (ours, theirs, ours, ...) so machine noise hits both
alike; the table shows medians and the ratio of the medians (the headline figure), and beside it
the paired ratio: the median over runs of each run's ratio, ours over the transformers run that
followed it. The paired ratio holds when the machine's speed drifts between runs, which moves the
two medians apart unevenly; where the two ratios differ much, the machine was not steady. Peak
memory: the peak resident set of a fresh process doing the same work once, per library.

    uv run python tools/bench_torch.py                     # tiny and 135M shapes, 6 runs each
    uv run python tools/bench_torch.py --sizes tiny --runs 3

The first lines name the CPU (model, vendor, vector flags), the ATen kernel level and the fp32
matmul backend llm-torch chose for it (``LLMT_CPU_MATMUL`` overrides the choice); the last line
gives the four ratios (train and generate at both shapes) that the README's targets refer to.
To see an AVX2 machine's kernels on an AVX-512 one (an emulation: same cores and caches, only the
instruction sets are limited), ``--kernels native avx2`` runs the whole comparison twice, in a child
process each, the second with every library that picks its kernels at run time held to AVX2
(``avx2_emulation_env``: ATen, oneDNN, MKL and numpy, whose sort the sampler uses), and ends with
both sets of ratios:

    uv run python tools/bench_torch.py --kernels native avx2 --runs 3 --no-memory
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

SIZES = {
    # about 5M parameters
    "tiny": dict(vocab_size=8192, hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4,
                 num_kv_heads=2, train_batch=8),
    # the SmolLM2-135M shape
    "135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
                 num_kv_heads=3, train_batch=4),
}
SEQ_LEN, GEN_BATCH, PROMPT_LEN, NEW_TOKENS = 256, 8, 32, 128


def build(size: str):
    """Our model and transformers' LlamaForCausalLM with the same config and the same weights.

    Used for speed; memory is measured on a process that builds only one of them."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_torch.model import LlamaModel, ModelConfig

    shape = {k: v for k, v in SIZES[size].items() if k != "train_batch"}
    torch.manual_seed(0)
    ours = LlamaModel(ModelConfig(max_seq_len=1024, tie_embeddings=True, **shape))
    theirs = LlamaForCausalLM(LlamaConfig(
        vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"], num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
        max_position_embeddings=1024, tie_word_embeddings=True, rms_norm_eps=1e-5,
        attn_implementation="sdpa"))
    theirs.load_state_dict(ours.state_dict(), strict=False)
    theirs.tie_weights()
    return ours, theirs


def train_runner(library: str, model, batch: int):
    """A function doing one optimizer step; returns the tokens it trained on."""
    from llm_core.builtins.losses import cross_entropy
    from llm_core.specs import OptimizerSpec
    from llm_torch.engine import TorchEngine

    ids = torch.randint(0, model.config.vocab_size, (batch, SEQ_LEN + 1), generator=torch.Generator().manual_seed(1))
    inputs, labels = ids[:, :-1], ids[:, 1:]
    if library == "llm-torch":
        engine = TorchEngine(model, optimizer=OptimizerSpec(lr=1e-4, grad_clip=1.0, schedule="constant"),
                             total_steps=1_000_000)

        def step() -> int:
            engine.train_step({"input_ids": inputs, "labels": labels}, cross_entropy)
            return inputs.numel()

        return step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, foreach=True)
    model.train()

    def hf_step() -> int:
        loss = model(input_ids=inputs, labels=inputs).loss  # transformers shifts labels inside
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return inputs.numel()

    return hf_step


def generate_runner(library: str, model):
    from llm_core.specs import SamplingSpec

    prompts = torch.randint(0, model.config.vocab_size, (GEN_BATCH, PROMPT_LEN),
                            generator=torch.Generator().manual_seed(2))
    model.eval()
    if library == "llm-torch":
        from llm_torch.engine import TorchEngine

        params = SamplingSpec(max_new_tokens=NEW_TOKENS, temperature=1.0, top_p=0.95, seed=0)
        engine = TorchEngine(model)  # no tokenizer: pad id 0 and no stop tokens, as transformers runs

        def gen() -> int:
            groups = engine.generate(prompts.tolist(), 1, params)
            return sum(len(s.token_ids) for g in groups for s in g)

        return gen

    def hf_gen() -> int:
        with torch.inference_mode():
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True,
                                 temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=NEW_TOKENS,
                                 min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0, use_cache=True)
        return (out.shape[1] - PROMPT_LEN) * GEN_BATCH

    return hf_gen


def make_runner(library: str, task: str, size: str, model=None):
    if model is None:
        ours, theirs = build(size)
        model = ours if library == "llm-torch" else theirs
    if task == "train":
        return train_runner(library, model, SIZES[size]["train_batch"])
    return generate_runner(library, model)


def timed(fn) -> tuple[float, float]:
    """(tokens per wall-clock second, tokens per CPU second of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = fn()
    return tokens / (time.perf_counter() - wall), tokens / (time.process_time() - cpu)


def side_by_side(task: str, size: str, runs: int, ours, theirs) -> dict[str, dict[str, list[float]]]:
    """Rates of both libraries on the task, alternating; ``ours``, ``theirs`` from ``build``."""
    runners = {"llm-torch": make_runner("llm-torch", task, size, ours),
               "transformers": make_runner("transformers", task, size, theirs)}
    for fn in runners.values():  # warm-up: allocator, kernels, first-call overheads
        fn()
    rates: dict[str, dict[str, list[float]]] = {lib: {"wall": [], "cpu": []} for lib in runners}
    for _ in range(runs):
        for lib, fn in runners.items():
            wall, cpu = timed(fn)
            rates[lib]["wall"].append(wall)
            rates[lib]["cpu"].append(cpu)
    return rates


def peak_memory_mib(library: str, task: str, size: str, threads: int) -> tuple[float, float]:
    """(peak RSS, peak RSS minus the RSS after imports) of a fresh process that builds only this
    library's model and runs the task twice. The peak is VmHWM (per process image): getrusage's
    ru_maxrss would carry over the parent's peak across fork + exec."""
    code = (f"import sys; sys.argv=['x']; import torch; torch.set_num_threads({threads}); "
            "sys.path.insert(0, 'tools'); import bench_torch as b, transformers, llm_torch.engine; "
            "base = b.status_kib('VmRSS'); "
            f"fn=b.make_runner({library!r}, {task!r}, {size!r}, b.build_one({library!r}, {size!r})); fn(); fn(); "
            "print(base, b.status_kib('VmHWM'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = (int(v) for v in out.stdout.strip().splitlines()[-1].split())
    return peak / 1024, (peak - base) / 1024


def status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def build_one(library: str, size: str):
    """Only one library's model (for a memory measurement that the other does not inflate)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_torch.model import LlamaModel, ModelConfig

    shape = {k: v for k, v in SIZES[size].items() if k != "train_batch"}
    torch.manual_seed(0)
    if library == "llm-torch":
        return LlamaModel(ModelConfig(max_seq_len=1024, tie_embeddings=True, **shape))
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"], num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
        max_position_embeddings=1024, tie_word_embeddings=True, rms_norm_eps=1e-5,
        attn_implementation="sdpa"))


VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
EMULATION_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                       "NPY_DISABLE_CPU_FEATURES", "LLMT_CPU_MATMUL")


def avx2_emulation_env() -> dict[str, str]:
    """Environment variables that hold every run-time-dispatching library of a torch process to
    AVX2 kernels on an AVX-512 CPU: ATen, oneDNN, MKL, and numpy (its AVX-512 targets, by the names
    this numpy build dispatches to: numpy 2.4 calls them X86_V4, AVX512_ICL..., and silently
    ignores a name it does not dispatch to, such as AVX512F)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    avx512 = [name for name in __cpu_dispatch__ if name.startswith(("AVX512", "X86_V4"))]
    return {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "NPY_DISABLE_CPU_FEATURES": " ".join(avx512)}


def numpy_simd() -> str:
    """The highest instruction-set targets numpy dispatches to in this process."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return " ".join(name for name in __cpu_dispatch__ if __cpu_features__.get(name)) or "baseline only"


def describe_cpu() -> str:
    """The CPU as the results depend on it: model, vendor, vector flags, kernels in use."""
    import os
    import platform

    from llm_torch.linear import cpu_features, cpu_info, cpu_matmul_backend

    vendor, flags = cpu_features()
    fields = cpu_info()
    model = fields.get("model name", platform.processor())
    # Family and model tell CPU generations apart where the name does not: "AMD EPYC" alone may be
    # a Zen 3 (family 25, Milan model 1), a Zen 4 (family 25, Genoa model 17) or a Zen 5 (family 26).
    generation = ", ".join(f"{name} {fields[name]}" for name in ("cpu family", "model", "stepping") if name in fields)
    present = [flag for flag in VECTOR_FLAGS if flag in flags] or ["(flags unknown)"]
    limits = [f"{name}={os.environ[name]}" for name in EMULATION_VARIABLES if name in os.environ]
    return (f"CPU: {model} ({vendor or 'vendor unknown'}{', ' + generation if generation else ''}, "
            f"{os.cpu_count()} logical CPUs); vector flags: "
            f"{' '.join(present)}\n"
            f"torch {torch.__version__}: ATen kernels {torch.backends.cpu.get_cpu_capability()}, "
            f"llm-torch fp32 matmuls by {cpu_matmul_backend()}; numpy targets {numpy_simd()}"
            + (f"; limited by {' '.join(limits)}" if limits else ""))


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--name v ...`` or ``--name=v``)."""
    out, dropping = [], False
    for arg in argv:
        if dropping and not arg.startswith("--"):
            continue
        dropping = arg in names
        if not dropping and not arg.startswith(tuple(f"{name}=" for name in names)):
            out.append(arg)
    return out


def run_per_kernel_set(kernel_sets: list[str], argv: list[str], json_path: str | None) -> None:
    """This benchmark once per kernel set, each in a child process, then every set's ratios."""
    import os
    import tempfile

    summary = []
    for kernels in kernel_sets:
        env = dict(os.environ)
        if kernels == "avx2":
            env.update(avx2_emulation_env())
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            path = handle.name
        print(f"=== kernels: {kernels} ===", flush=True)
        try:
            subprocess.run([sys.executable, __file__, *argv, "--json", path], env=env, check=True)
            with open(path) as handle:
                summary.append((kernels, json.load(handle)))
        finally:
            os.unlink(path)
    for kernels, results in summary:
        print(f"ratios llm-torch / transformers (wall), {kernels} kernels: " + ratios_line(results))
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(dict(summary), handle, indent=2)


def main() -> None:
    global NEW_TOKENS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--tasks", nargs="+", default=["train", "generate"], choices=["train", "generate"])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory measurements")
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS, help="tokens generated per prompt")
    parser.add_argument("--json", help="also write the results to this file (with --kernels: per set)")
    parser.add_argument("--kernels", nargs="+", choices=["native", "avx2"],
                        help="run everything once per kernel set, each in a child process (avx2: an "
                             "emulation on an AVX-512 CPU, avx2_emulation_env) and print each set's ratios")
    args = parser.parse_args()
    if args.kernels:  # the same options for each child, without --kernels and --json
        run_per_kernel_set(args.kernels, without_options(sys.argv[1:], ("--kernels", "--json")), args.json)
        return
    torch.set_num_threads(args.threads)
    NEW_TOKENS = args.new_tokens
    print(describe_cpu(), flush=True)
    results = []
    for size in args.sizes:
        for task in args.tasks:
            if args.memory_only:
                for lib in ("llm-torch", "transformers"):
                    peak, over = peak_memory_mib(lib, task, size, args.threads)
                    print(f"{size:>5} {task:<8} {lib:<12} peak RSS {peak:.0f} MiB, {over:.0f} MiB over imports")
                continue
            ours, theirs = build(size)
            rates = side_by_side(task, size, args.runs, ours, theirs)
            row = {"size": size, "task": task, "runs": args.runs, "threads": args.threads,
                   "new_tokens": NEW_TOKENS}
            for lib, values in rates.items():
                wall, cpu = values["wall"], values["cpu"]
                row[lib] = {"median": statistics.median(wall), "min": min(wall), "max": max(wall),
                            "cpu_median": statistics.median(cpu)}
                if not args.no_memory:
                    row[lib]["peak_rss_mib"], row[lib]["peak_over_imports_mib"] = peak_memory_mib(
                        lib, task, size, args.threads)
            row["ratio"] = row["llm-torch"]["median"] / row["transformers"]["median"]
            row["paired_ratio"] = paired_ratio(rates["llm-torch"]["wall"], rates["transformers"]["wall"])
            row["cpu_ratio"] = row["llm-torch"]["cpu_median"] / row["transformers"]["cpu_median"]
            if task == "generate":
                row["decode_preparation_s"] = decode_preparation_s(ours)
            results.append(row)
            print(format_row(row), flush=True)
            if task == "generate":
                print(format_preparation(row), flush=True)
    if results:
        print("ratios llm-torch / transformers (wall): " + ratios_line(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


def decode_preparation_s(model) -> float:
    """Seconds llm-torch takes to prepare ``model``'s decoding weights for the benchmark's batch
    (median of 3)."""
    from llm_torch.decode import DecodeWeights

    times = []
    for _ in range(3):
        start = time.perf_counter()
        DecodeWeights.of(model, GEN_BATCH)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def format_preparation(row: dict) -> str:
    """The generation row again with the decoding weights prepared in every call (RL rollouts)."""
    prep, rate = row["decode_preparation_s"], row["llm-torch"]["median"]
    tokens = GEN_BATCH * row["new_tokens"]
    with_prep = tokens / (tokens / rate + prep)
    return (f"{'':14}llm-torch prepares its decoding weights in {prep * 1e3:.0f} ms, once per weight change; "
            f"paid in every call: {with_prep:.1f} tok/s, ratio {with_prep / row['transformers']['median']:.2f}x")


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over runs of ours[i] / theirs[i], each run of ours against the run of theirs after it."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def ratios_line(results: list[dict]) -> str:
    """``tiny train 1.19x (paired 1.21x), ...``: each row's ratio of medians, then its paired ratio."""
    return ", ".join(f"{row['size']} {row['task']} {row['ratio']:.2f}x (paired {row['paired_ratio']:.2f}x)"
                     for row in results)


def format_row(row: dict) -> str:
    ours, theirs = row["llm-torch"], row["transformers"]
    memory = ""
    if "peak_rss_mib" in ours:
        memory = (f" | peak RSS {ours['peak_rss_mib']:.0f} vs {theirs['peak_rss_mib']:.0f} MiB "
                  f"(over imports {ours['peak_over_imports_mib']:.0f} vs {theirs['peak_over_imports_mib']:.0f})")
    return (f"{row['size']:>5} {row['task']:<8} llm-torch {ours['median']:8.1f} tok/s "
            f"(min {ours['min']:.0f}, max {ours['max']:.0f}; per CPU-s {ours['cpu_median']:.0f}) | "
            f"transformers {theirs['median']:8.1f} tok/s (min {theirs['min']:.0f}, max {theirs['max']:.0f}; "
            f"per CPU-s {theirs['cpu_median']:.0f}) | ratio {row['ratio']:.2f}x (paired {row['paired_ratio']:.2f}x, "
            f"CPU-time {row['cpu_ratio']:.2f}x)"
            f"{memory}")


if __name__ == "__main__":
    main()
