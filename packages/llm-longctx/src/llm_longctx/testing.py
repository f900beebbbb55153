"""Run a function in P processes joined in a gloo group (tests, benchmarks); collect what each returns.

``spawn(fn, world, *args)`` starts ``world`` fresh interpreters (the ``spawn`` start method: no
forked OpenMP state), each joining one process group through a rendezvous file, and returns
``[fn(0, world, *args), fn(1, world, *args), ...]``. ``fn`` must be importable (defined at module
level in an installed module): tests pass one of the workers below, or their own package's.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch


def spawn(fn: Callable[..., Any], world: int, *args: Any, timeout_s: float = 120.0, threads: int = 1) -> list[Any]:
    """``fn(rank, world, *args)`` in ``world`` processes over gloo; their results, by rank."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        context = mp.start_processes(_run_rank, args=(world, folder, threads, fn, args), nprocs=world,
                                     join=False, start_method="spawn")
        deadline = time.monotonic() + timeout_s
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                raise TimeoutError(f"{world} processes running {fn.__name__} did not finish in {timeout_s:.0f} s")
        return [torch.load(os.path.join(folder, f"result-{rank}.pt"), weights_only=False) for rank in range(world)]


def _run_rank(rank: int, world: int, folder: str, threads: int, fn: Callable[..., Any], args: tuple) -> None:
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(folder, f"result-{rank}.pt"))


def ring_attention_shard(rank: int, world: int, options: dict[str, Any], q: torch.Tensor, k: torch.Tensor,
                         v: torch.Tensor, grad_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """One process of a ring-attention check: its shard of the whole-sequence q, k, v (B, H, T, D)
    through :class:`RingAttention` with ``options``; returns its positions, output and gradients."""
    from llm_longctx.configs import RingAttentionConfig
    from llm_longctx.ring import RingAttention

    ring = RingAttention(RingAttentionConfig(**options))
    mine = ring.positions(q.shape[2], rank, world)
    local = [t[:, :, mine].clone().requires_grad_(True) for t in (q, k, v)]
    out = ring.attention(*local)
    out.backward(grad_out[:, :, mine])
    return {"positions": mine, "out": out.detach(), "dq": local[0].grad, "dk": local[1].grad, "dv": local[2].grad}
