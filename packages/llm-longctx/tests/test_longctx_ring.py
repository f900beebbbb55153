"""Ring attention over gloo equals full causal attention on the gathered sequence (fp32, <= 1e-5):
outputs and the gradients of queries, keys and values, with GQA, for P = 2 and 4 processes and the
zigzag, striped and contiguous layouts, through both block kernels; and the load balance of the
layouts, counted."""

from __future__ import annotations

import itertools

import pytest
import torch

from llm_longctx.blocks import block_backward, block_forward
from llm_longctx.configs import RingAttentionConfig
from llm_longctx.ring import RingAttention, block_plan
from llm_longctx.testing import ring_attention_shards, spawn

LAYOUTS = ("zigzag", "striped", "contiguous")


def full_attention(q, k, v, causal=True):
    """Softmax attention written out in float64: each query head h reads key head h // (H / H_kv)."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.double().repeat_interleave(groups, 1), v.double().repeat_interleave(groups, 1)
    scores = q.double() @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        t = q.shape[2]
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def inputs(seq_len, heads=4, kv_heads=2, dim=16, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, h, seq_len, dim, generator=g) for h in (heads, kv_heads, kv_heads, heads)]


def reference_grads(q, k, v, grad_out):
    leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    out = full_attention(*leaves)
    out.backward(grad_out.double())
    return {"out": out.detach(), "dq": leaves[0].grad, "dk": leaves[1].grad, "dv": leaves[2].grad}


def check_ring(world, seq_len, kernels=("flash", "math")):
    q, k, v, grad_out = inputs(seq_len)
    expected = reference_grads(q, k, v, grad_out)
    cases = [{"layout": layout, "kernel": kernel} for layout, kernel in itertools.product(LAYOUTS, kernels)]
    per_rank = spawn(ring_attention_shards, world, cases, q, k, v, grad_out, timeout_s=300)
    for index, case in enumerate(cases):
        seen = torch.cat([per_rank[r][index]["positions"] for r in range(world)])
        assert sorted(seen.tolist()) == list(range(seq_len)), case  # the ranks' shards tile the sequence
        for rank in range(world):
            got = per_rank[rank][index]
            for name, full in expected.items():
                error = (got[name].double() - full[:, :, got["positions"]]).abs().max().item()
                assert error <= 1e-5, (case, rank, name, error)


def test_ring_attention_equals_full_attention_on_two_processes():
    check_ring(world=2, seq_len=40)


@pytest.mark.slow
def test_ring_attention_equals_full_attention_on_four_processes():
    """Four processes on two cores wait on each other at every ring step: marked slow."""
    check_ring(world=4, seq_len=48, kernels=("auto",))


@pytest.mark.parametrize("kernel", ["flash", "math"])
@pytest.mark.parametrize("causal", [True, False])
def test_block_kernels_equal_attention_and_its_gradients(kernel, causal, monkeypatch):
    import llm_longctx.blocks as blocks

    monkeypatch.setattr(blocks, "QUERY_CHUNK", 7)  # several chunks, one ragged
    q, k, v, grad_out = inputs(24, heads=6, kv_heads=2)
    out, lse = block_forward(q, k, v, causal, kernel)
    leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    reference = full_attention(*leaves, causal=causal)
    reference.backward(grad_out.double())
    assert (out.double() - reference).abs().max() <= 1e-5
    dq, dk, dv = block_backward(grad_out, q, k, v, out, lse, causal, kernel)
    for got, want in zip((dq, dk, dv), leaves, strict=True):
        assert (got.double() - want.grad).abs().max() <= 1e-5


@pytest.mark.parametrize("world", [2, 4, 8])
def test_zigzag_and_striped_balance_the_causal_work(world):
    """Query-key pairs each process computes at each ring step: the balanced layouts give every
    process the same share at every step (striped within one diagonal), a contiguous cut does not."""
    size = 16
    for layout in LAYOUTS:
        ring = RingAttention(RingAttentionConfig(layout=layout))
        for step in range(1, world):
            work = []
            for rank in range(world):
                plan = block_plan(layout, rank, (rank - step) % world, size)
                rows = 0 if plan is None else len(range(size)[plan.rows])
                keys = 0 if plan is None else len(range(size)[plan.keys])
                work.append(0 if plan is None else (rows * (rows + 1) // 2 if plan.causal else rows * keys))
            spread = max(work) - min(work)
            if layout == "contiguous":
                assert spread == size * size, (layout, step, work)  # some processes idle, others full
            else:
                assert spread <= size, (layout, step, work)
            positions = [ring.positions(size * world, r, world) for r in range(world)]
            assert sorted(torch.cat(positions).tolist()) == list(range(size * world))


def test_sequence_length_must_fit_the_layout():
    with pytest.raises(ValueError, match="multiple of 8"):
        RingAttention(RingAttentionConfig(layout="zigzag")).positions(36, 0, 4)
