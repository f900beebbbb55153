"""Ring attention over ``torch.distributed`` (Liu et al. 2023), with causal load balancing.

The sequence is cut across the P processes of the default group; each keeps its queries and
passes its keys / values round the ring, one block per step (sent while the current block is
computed). Partial results merge with their log-sum-exp, so after P steps every process holds its
rows of exact causal attention over the whole sequence. The backward goes round the ring again:
the key / value gradients travel with their block and, after a full turn, arrive back at the
process that owns it (ring-flash-attention's scheme).

With a plain contiguous cut, causality leaves the first process idle for most steps and the last
one busy for all. Two layouts balance the work, each step costing every process half a block:

- ``zigzag`` (ring-flash-attention): the sequence in 2P chunks, process r holding chunks r and
  2P - 1 - r. A block from an earlier process is seen through its first half by all our queries;
  one from a later process is seen whole by our second half only.
- ``striped`` (Brandon et al. 2023, Striped Attention): process r holds positions r, r + P, ...;
  every block is (strictly, for a later process) lower-triangular.

gloo on CPU, NCCL on GPU: the only collective used is a paired isend / irecv with the neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from llm_longctx.blocks import Kernel, block_backward, block_forward
from llm_longctx.configs import Layout, RingAttentionConfig


class RingAttention:
    """``llm_core.engines.ContextParallelAttention`` by ring attention."""

    def __init__(self, config: RingAttentionConfig):
        self.config = config

    def multiple(self, world: int) -> int:
        return 2 * world if self.config.layout == "zigzag" else world

    def positions(self, seq_len: int, rank: int, world: int) -> torch.Tensor:
        if seq_len % self.multiple(world):
            raise ValueError(f"ring attention ({self.config.layout}) over {world} processes needs a sequence "
                             f"length that is a multiple of {self.multiple(world)}, got {seq_len}")
        if self.config.layout == "striped":
            return torch.arange(rank, seq_len, world)
        if self.config.layout == "contiguous":
            size = seq_len // world
            return torch.arange(rank * size, (rank + 1) * size)
        chunk = seq_len // (2 * world)
        early, late = rank * chunk, (2 * world - 1 - rank) * chunk
        return torch.cat((torch.arange(early, early + chunk), torch.arange(late, late + chunk)))

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _RingAttention.apply(q, k, v, self.config.layout, self.config.kernel)


@dataclass(frozen=True)
class BlockPlan:
    """Which of our query rows see which rows of a key block, and whether through its diagonal."""

    rows: slice
    keys: slice
    causal: bool


def block_plan(layout: Layout, rank: int, source: int, size: int) -> BlockPlan | None:
    """What our ``size`` local queries compute against the key block of process ``source``
    (None: nothing, it lies entirely after them)."""
    every = slice(0, size)
    if source == rank:  # our own block, in position order: plain causal
        return BlockPlan(every, every, True)
    if layout == "contiguous":
        return BlockPlan(every, every, False) if source < rank else None
    if layout == "zigzag":
        half = size // 2
        if source < rank:  # its early chunk precedes both of ours; its late chunk follows both
            return BlockPlan(every, slice(0, half), False)
        return BlockPlan(slice(half, size), every, False)  # both its chunks precede our late chunk only
    # striped: our row i is position i P + rank, its key l is l P + source.
    if source < rank:
        return BlockPlan(every, every, True)  # l <= i
    if size == 1:
        return None
    return BlockPlan(slice(1, size), slice(0, size - 1), True)  # l < i: the diagonal shifted by one


class _Exchange:
    """Send a tensor to the next process and receive the previous one's, asynchronously."""

    def __init__(self, tensor: torch.Tensor):
        rank, world = dist.get_rank(), dist.get_world_size()
        self.received = torch.empty_like(tensor)
        self._requests = dist.batch_isend_irecv([dist.P2POp(dist.isend, tensor, (rank + 1) % world),
                                                 dist.P2POp(dist.irecv, self.received, (rank - 1) % world)])

    def wait(self) -> torch.Tensor:
        for request in self._requests:
            request.wait()
        return self.received


def _merge(out: torch.Tensor, lse: torch.Tensor, rows: slice, block_out: torch.Tensor,
           block_lse: torch.Tensor) -> None:
    """Fold a block's (output, log-sum-exp) into the running ones, in place, for query ``rows``."""
    old = lse[:, :, rows]
    new = torch.logaddexp(old, block_lse)
    out[:, :, rows] = (out[:, :, rows] * (old - new).exp()[..., None]
                       + block_out.float() * (block_lse - new).exp()[..., None])
    lse[:, :, rows] = new


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Layout,
                kernel: Kernel) -> torch.Tensor:
        rank, world, size = dist.get_rank(), dist.get_world_size(), q.shape[2]
        out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
        lse = torch.full(q.shape[:-1], float("-inf"), dtype=torch.float32, device=q.device)
        kv = torch.stack((k, v)).contiguous()  # one message per step
        for step in range(world):
            incoming = _Exchange(kv) if step + 1 < world else None
            plan = block_plan(layout, rank, (rank - step) % world, size)
            if plan is not None:
                block_out, block_lse = block_forward(q[:, :, plan.rows], kv[0][:, :, plan.keys],
                                                     kv[1][:, :, plan.keys], plan.causal, kernel)
                _merge(out, lse, plan.rows, block_out, block_lse)
            if incoming is not None:
                kv = incoming.wait()
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.layout, ctx.kernel = layout, kernel
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[Any, ...]:
        q, k, v, out, lse = ctx.saved_tensors
        rank, world, size = dist.get_rank(), dist.get_world_size(), q.shape[2]
        dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
        kv = torch.stack((k, v)).contiguous()
        passing: _Exchange | None = None  # the key / value gradients of the block we hold next
        for step in range(world):
            incoming = _Exchange(kv) if step + 1 < world else None
            plan = block_plan(ctx.layout, rank, (rank - step) % world, size)
            dkv = torch.zeros(kv.shape, dtype=torch.float32, device=q.device)
            if plan is not None:
                r, c = plan.rows, plan.keys
                dq_b, dk_b, dv_b = block_backward(dout[:, :, r], q[:, :, r], kv[0][:, :, c], kv[1][:, :, c],
                                                  out[:, :, r], lse[:, :, r], plan.causal, ctx.kernel)
                dq[:, :, r] += dq_b
                dkv[0][:, :, c] += dk_b
                dkv[1][:, :, c] += dv_b
            if passing is not None:
                dkv += passing.wait()  # what the processes before us added to this block
            passing = _Exchange(dkv)
            if incoming is not None:
                kv = incoming.wait()
        dkv = passing.wait()  # our own block's gradients, back from their turn round the ring
        return dq.to(q.dtype), dkv[0].to(k.dtype), dkv[1].to(v.dtype), None, None
