"""Attention of one block of queries against one block of keys, with its log-sum-exp.

Ring attention computes attention a block at a time and merges the partial results; each block
therefore returns, besides its output, the log-sum-exp ``lse`` of its scores (per query row), and
its backward takes the *merged* output and log-sum-exp (the flash-attention backward: the
probabilities of a block are exp(scores - lse) with the final lse). On CPU both directions run
through PyTorch's flash-attention kernel for CPU (``aten._scaled_dot_product_flash_attention_for_cpu``,
about 3.5x faster than the matmuls below at 4k tokens); on other devices, or with
``kernel="math"``, through plain matmuls over chunks of query rows (memory: chunk x keys).

``causal`` means the block is square and its row i sees keys 0..i (the diagonal block).
Grouped-query attention: ``k`` and ``v`` have H_kv heads, each shared by H / H_kv query heads.
"""

from __future__ import annotations

import torch

from llm_longctx.configs import Kernel

Tensor = torch.Tensor
QUERY_CHUNK = 1024  # query rows per matmul in the math kernel


def block_forward(q: Tensor, k: Tensor, v: Tensor, causal: bool, kernel: Kernel = "auto") -> tuple[Tensor, Tensor]:
    """(out (B, H, Tq, D) in q's dtype, lse (B, H, Tq) fp32) of softmax(q k^T / sqrt(D)) v."""
    if _use_flash(q, kernel):
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)
        return out, lse.float()
    return _math_forward(q, k, v, causal)


def block_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, causal: bool,
                   kernel: Kernel = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (dq, dk, dv) of this block's share of the attention whose merged output and
    log-sum-exp are ``out`` and ``lse`` (shapes of q, k, v; fp32 for the math kernel)."""
    if _use_flash(q, kernel):
        groups = q.shape[1] // k.shape[1]
        ke, ve = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        dq, dk, dv = backward(dout.contiguous(), q.contiguous(), ke.contiguous(), ve.contiguous(),
                              out.to(q.dtype).contiguous(), lse.contiguous(), 0.0, causal)
        return dq, _sum_groups(dk, groups), _sum_groups(dv, groups)
    return _math_backward(dout, q, k, v, out, lse, causal)


def _use_flash(q: Tensor, kernel: Kernel) -> bool:
    if kernel == "math":
        return False
    available = q.device.type == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
    if kernel == "flash" and not available:
        raise RuntimeError("the flash kernel runs on CPU tensors only (this torch's "
                           "_scaled_dot_product_flash_attention_for_cpu); use kernel='math'")
    return available


def _sum_groups(grad: Tensor, groups: int) -> Tensor:
    """(B, H, T, D) gradients of the repeated key heads back onto the H / groups shared heads."""
    b, h, t, d = grad.shape
    return grad.view(b, h // groups, groups, t, d).sum(2)


def _grouped(q: Tensor, kv_heads: int) -> Tensor:
    """(B, H, T, D) queries as (B, H_kv, G, T, D): the G query heads that share each key head."""
    b, h, t, d = q.shape
    return q.view(b, kv_heads, h // kv_heads, t, d)


def _scores(q_rows: Tensor, k: Tensor, first_row: int, causal: bool) -> Tensor:
    """Scaled scores (B, H_kv, G, rows, Tk) in fp32, -inf above the diagonal of a causal block."""
    scores = torch.matmul(q_rows.float(), k.float()[:, :, None].transpose(-1, -2)) * q_rows.shape[-1] ** -0.5
    if causal:
        rows = torch.arange(first_row, first_row + q_rows.shape[-2], device=q_rows.device)
        keys = torch.arange(k.shape[-2], device=q_rows.device)
        scores = scores.masked_fill(keys[None, :] > rows[:, None], float("-inf"))
    return scores


def _math_forward(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    grouped = _grouped(q, k.shape[1])
    outs, lses = [], []
    for start in range(0, q.shape[2], QUERY_CHUNK):
        scores = _scores(grouped[..., start:start + QUERY_CHUNK, :], k, start, causal)
        lse = scores.logsumexp(-1)
        outs.append(torch.matmul((scores - lse[..., None]).exp(), v.float()[:, :, None]))
        lses.append(lse)
    out, lse = torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)
    return out.flatten(1, 2).to(q.dtype), lse.flatten(1, 2)


def _math_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                   causal: bool) -> tuple[Tensor, Tensor, Tensor]:
    kv_heads, scale = k.shape[1], q.shape[-1] ** -0.5
    grouped, dout_g = _grouped(q, kv_heads), _grouped(dout.float(), kv_heads)
    lse_g = lse.view(*grouped.shape[:-1])
    # D_i = sum_d dout_id out_id: the softmax Jacobian's row term (flash-attention's backward).
    delta = (dout_g * _grouped(out.float(), kv_heads)).sum(-1)
    dq = torch.empty(grouped.shape, dtype=torch.float32, device=q.device)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=q.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=q.device)
    for start in range(0, q.shape[2], QUERY_CHUNK):
        rows = slice(start, start + QUERY_CHUNK)
        probs = (_scores(grouped[..., rows, :], k, start, causal) - lse_g[..., rows, None]).exp()
        dv += torch.matmul(probs.transpose(-1, -2), dout_g[..., rows, :]).sum(2)
        dprobs = torch.matmul(dout_g[..., rows, :], v.float()[:, :, None].transpose(-1, -2))
        dscores = probs * (dprobs - delta[..., rows, None]) * scale
        dq[..., rows, :] = torch.matmul(dscores, k.float()[:, :, None])
        dk += torch.matmul(dscores.transpose(-1, -2), grouped[..., rows, :].float()).sum(2)
    return dq.flatten(1, 2).to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)
