"""Ring attention against full attention: time and peak memory per process, and where they cross.

Two measurements, each in fresh processes (gloo, one per rank; llm_longctx.testing.spawn):

1. attention alone (forward + backward, fp32, causal, GQA): full attention is PyTorch's
   ``scaled_dot_product_attention`` (the flash kernel on CPU) over the whole sequence in one
   process with ``--processes`` threads; ring attention runs over ``--processes`` processes of one
   thread each (the same cores), every layout asked for. Time: median of ``--runs`` after a warm-up,
   the slowest rank's. Memory: the peak resident set during the runs minus the resident set before
   (``/proc/self/clear_refs`` resets the peak), the largest over ranks.
2. a context-parallel training step of a small llm-torch model (``--train-lengths``): one process on
   the whole sequence against the engine's ``context_parallel`` over the processes; step time,
   peak memory per process, and the first step's loss on both sides (they must agree).

    uv run python tools/bench_longctx.py                        # 4k and 16k tokens, 2 processes
    uv run python tools/bench_longctx.py --lengths 1024 2048 --train-lengths 1024 --runs 1   # smoke

The figures depend on the machine: run it on a quiet one (it prints the CPU and whether it has AVX-512).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
from typing import Any

import torch

from llm_longctx.testing import spawn


def cpu_description() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                     model)
    except OSError:
        pass
    try:
        flags = open("/proc/cpuinfo").read()
        avx512 = "avx512f" in flags.split()
    except OSError:
        avx512 = False
    return f"{model}, {'with' if avx512 else 'without'} avx512f, {torch.get_num_threads()} threads available"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak resident memory (MiB) above what was resident when the block started."""

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # reset VmHWM to the current resident set
        except OSError:
            pass
        self.before = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mib = (_status_kib("VmHWM") - self.before) / 1024


def attention_inputs(rank: int, world: int, shape: dict[str, int], positions: torch.Tensor | None):
    """This rank's q, k, v and output gradient (all ranks cut the same seeded whole-sequence tensors)."""
    g = torch.Generator().manual_seed(0)
    b, t, d = shape["batch"], shape["seq_len"], shape["dim"]
    tensors = [torch.randn(b, h, t, d, generator=g) for h in (shape["heads"], shape["kv_heads"],
                                                              shape["kv_heads"], shape["heads"])]
    if positions is not None:
        tensors = [x[:, :, positions].contiguous() for x in tensors]
    return tensors


def attention_worker(rank: int, world: int, shape: dict[str, int], layout: str | None, runs: int) -> dict[str, float]:
    """Forward + backward of full attention (layout None, one process) or of this rank's ring share."""
    import torch.distributed as dist
    import torch.nn.functional as F

    ring = None
    if layout is not None:
        from llm_longctx.configs import RingAttentionConfig
        from llm_longctx.ring import RingAttention

        ring = RingAttention(RingAttentionConfig(layout=layout))
    positions = ring.positions(shape["seq_len"], rank, world) if ring else None
    q, k, v, grad = attention_inputs(rank, world, shape, positions)
    q, k, v = (x.requires_grad_(True) for x in (q, k, v))

    def step() -> None:
        if ring is not None:
            out = ring.attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    step()  # warm-up
    times = []
    with PeakMemory() as peak:
        for _ in range(runs):
            dist.barrier()
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "peak_mib": peak.mib}


TRAIN_SHAPE = {"vocab_size": 4096, "hidden_size": 256, "intermediate_size": 768, "num_layers": 4, "num_heads": 8,
               "num_kv_heads": 2}


def train_worker(rank: int, world: int, seq_len: int, layout: str | None, runs: int) -> dict[str, float]:
    """Training steps of a small llm-torch model on one seeded sequence: whole (layout None) or sharded."""
    from llm_core.builtins.losses import cross_entropy
    from llm_core.specs import OptimizerSpec
    from llm_torch.engine import TorchEngine
    from llm_torch.model import LlamaModel, ModelConfig

    ring = None
    if layout is not None:
        from llm_longctx.configs import RingAttentionConfig
        from llm_longctx.ring import RingAttention

        ring = RingAttention(RingAttentionConfig(layout=layout))
    torch.manual_seed(0)
    engine = TorchEngine(LlamaModel(ModelConfig(max_seq_len=seq_len, **TRAIN_SHAPE)), optimizer=OptimizerSpec(lr=1e-4),
                         context_parallel=ring)
    ids = torch.randint(0, TRAIN_SHAPE["vocab_size"], (1, seq_len + 1), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    first = engine.train_step(batch, cross_entropy)["loss"]
    times = []
    with PeakMemory() as peak:
        for _ in range(runs):
            start = time.perf_counter()
            engine.train_step(batch, cross_entropy)
            times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "peak_mib": peak.mib, "first_loss": first}


def slowest(results: list[dict[str, float]]) -> dict[str, float]:
    return {"seconds": max(r["seconds"] for r in results), "peak_mib": max(r["peak_mib"] for r in results),
            **({"first_loss": results[0]["first_loss"]} if "first_loss" in results[0] else {})}


def crossover(rows: list[tuple[int, float]], what: str) -> str:
    """The measured length from which ring / full stays below 1 (ring attention wins from there on)."""
    wins = [ratio < 1 for _, ratio in rows]
    if not any(wins):
        return f"{what}: full attention wins at every measured length"
    if not wins[-1]:
        won = ", ".join(f"{length:,}" for (length, _), won in zip(rows, wins, strict=True) if won)
        return (f"{what}: ring attention wins at {won} tokens but not at the longest measured "
                f"({rows[-1][0]:,}): no crossover in the measured range")
    first = next(i for i in range(len(rows)) if all(wins[i:]))
    if first == 0:
        return f"{what}: ring attention wins at every measured length (from {rows[0][0]:,} tokens)"
    return f"{what}: the crossover lies between {rows[first - 1][0]:,} and {rows[first][0]:,} tokens"


def bench_attention(args: argparse.Namespace) -> None:
    print(f"\nattention, forward + backward, fp32, causal: batch {args.batch}, {args.heads} heads "
          f"({args.kv_heads} KV heads), head dim {args.dim}; full: 1 process x {args.processes} threads; "
          f"ring: {args.processes} processes x 1 thread")
    ratios: dict[str, list[tuple[int, float, float]]] = {layout: [] for layout in args.layouts}
    for length in args.lengths:
        shape = {"batch": args.batch, "seq_len": length, "heads": args.heads, "kv_heads": args.kv_heads,
                 "dim": args.dim}
        full = spawn(attention_worker, 1, shape, None, args.runs, timeout_s=3600, threads=args.processes)[0]
        print(f"  {length:>7,} tokens  full            {full['seconds']:8.3f} s  peak {full['peak_mib']:8.1f} MiB")
        for layout in args.layouts:
            ring = slowest(spawn(attention_worker, args.processes, shape, layout, args.runs, timeout_s=3600))
            time_ratio, memory_ratio = ring["seconds"] / full["seconds"], ring["peak_mib"] / max(full["peak_mib"], 1e-9)
            ratios[layout].append((length, time_ratio, memory_ratio))
            print(f"  {length:>7,} tokens  ring {layout:<10} {ring['seconds']:8.3f} s  peak {ring['peak_mib']:8.1f} "
                  f"MiB per process  (time x{time_ratio:.2f}, memory x{memory_ratio:.2f} of full)")
    for layout, rows in ratios.items():
        print(f"  {layout}: " + crossover([(n, t) for n, t, _ in rows], "time") + "; "
              + crossover([(n, m) for n, _, m in rows], "peak memory per process"))


def bench_training(args: argparse.Namespace) -> None:
    from llm_torch.model import LlamaModel, ModelConfig

    size = LlamaModel(ModelConfig(**TRAIN_SHAPE)).num_parameters() / 1e6
    print(f"\ncontext-parallel training step (llm-torch, {size:.1f}M parameters: {TRAIN_SHAPE}; one sequence, "
          f"AdamW): 1 process x {args.processes} threads vs {args.processes} processes x 1 thread, "
          f"ring {args.layouts[0]}")
    for length in args.train_lengths:
        one = spawn(train_worker, 1, length, None, args.runs, timeout_s=3600, threads=args.processes)[0]
        sharded = slowest(spawn(train_worker, args.processes, length, args.layouts[0], args.runs, timeout_s=3600))
        print(f"  {length:>7,} tokens  one process  {one['seconds']:8.3f} s/step  peak {one['peak_mib']:8.1f} MiB"
              f"  | context parallel {sharded['seconds']:8.3f} s/step  peak {sharded['peak_mib']:8.1f} MiB per "
              f"process (memory x{sharded['peak_mib'] / max(one['peak_mib'], 1e-9):.2f})  | first loss "
              f"{one['first_loss']:.6f} vs {sharded['first_loss']:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--train-lengths", type=int, nargs="*", default=[4096, 16384])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--layouts", nargs="+", default=["zigzag", "striped"],
                        choices=["zigzag", "striped", "contiguous"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}; torch {torch.__version__}")
    bench_attention(args)
    if args.train_lengths:
        bench_training(args)


if __name__ == "__main__":
    main()
