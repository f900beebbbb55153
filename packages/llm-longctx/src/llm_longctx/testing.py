"""Run a function in P processes joined in a gloo group (tests, benchmarks); collect what each returns.

``spawn(fn, world, *args)`` starts ``world`` processes, each joining one process group through a
rendezvous file, and returns ``[fn(0, world, *args), fn(1, world, *args), ...]``. They fork from a
``forkserver`` that has imported torch but run nothing (so no OpenMP state is forked): a process
starts in milliseconds instead of the seconds an import of torch takes. ``fn`` must be importable
(defined at module level in an installed module): tests pass one of the workers below.
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
    import multiprocessing

    import torch.multiprocessing as mp

    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
    with tempfile.TemporaryDirectory() as folder:
        context = mp.start_processes(_run_rank, args=(world, folder, threads, fn, args), nprocs=world,
                                     join=False, start_method="forkserver")
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


def ring_attention_shards(rank: int, world: int, cases: list[dict[str, Any]], q: torch.Tensor, k: torch.Tensor,
                          v: torch.Tensor, grad_out: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """One process of ring-attention checks: for each case (the options of a
    :class:`RingAttentionConfig`), its shard of the whole-sequence q, k, v (B, H, T, D) through ring
    attention, backward with its rows of ``grad_out``; its positions, output and gradients."""
    from llm_longctx.configs import RingAttentionConfig
    from llm_longctx.ring import RingAttention

    results = []
    for options in cases:
        ring = RingAttention(RingAttentionConfig(**options))
        mine = ring.positions(q.shape[2], rank, world)
        local = [t[:, :, mine].clone().requires_grad_(True) for t in (q, k, v)]
        out = ring.attention(*local)
        out.backward(grad_out[:, :, mine])
        results.append({"positions": mine, "out": out.detach(), "dq": local[0].grad, "dk": local[1].grad,
                        "dv": local[2].grad})
    return results
