"""Pure-torch stand-ins for the ``flash_attn`` symbols nanotron 0.4 imports (used only without flash_attn).

Exactly these, with flash_attn 2's signatures and semantics: ``bert_padding.unpad_input`` /
``pad_input``, ``flash_attn_varlen_func`` (causal attention over packed sequences, GQA),
``layers.rotary.RotaryEmbedding`` (interleaved or not, base 10,000 by default) and
``ops.triton.layer_norm.layer_norm_fn`` (LayerNorm / RMSNorm, statistics in fp32).
``flash_attn_with_kvcache`` (nanotron's own decoding) is not needed here: llmt decodes with a
rollout engine, so it raises. :mod:`llm_nanotron.compat` registers these as ``flash_attn.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor):
    """(batch, seqlen, ...) -> (total, ...) of the kept positions, their flat indices, cu_seqlens, max_seqlen."""
    seqlens = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return flat[indices], indices, cu_seqlens, int(seqlens.max())


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """Inverse of :func:`unpad_input`: zeros where nothing was kept."""
    out = hidden_states.new_zeros(batch * seqlen, *hidden_states.shape[1:])
    out[indices] = hidden_states
    return out.view(batch, seqlen, *hidden_states.shape[1:])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, return_attn_probs=False, **unsupported):
    """Attention of each packed sequence to itself: q (total_q, heads, d), k / v (total_k, kv_heads, d).

    Causal masks align to the bottom right when a sequence has fewer queries than keys, as flash_attn 2
    does. Sequences of one common length (nanotron's training case) run as one batched call."""
    if dropout_p or return_attn_probs or unsupported:
        raise NotImplementedError("the flash_attn stand-in supports neither dropout, attention probabilities "
                                  f"nor {sorted(unsupported)}; install flash-attn for them")
    q_lens = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).tolist()
    k_lens = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).tolist()
    if len(set(q_lens)) == 1 and q_lens == k_lens:
        batch, length = len(q_lens), q_lens[0]
        return _attend(*(t.view(batch, length, *t.shape[1:]) for t in (q, k, v)), causal,
                       softmax_scale).reshape(q.shape[0], q.shape[1], v.shape[-1])
    outputs = []
    for i, (q_len, k_len) in enumerate(zip(q_lens, k_lens, strict=True)):
        qs = q[int(cu_seqlens_q[i]):int(cu_seqlens_q[i]) + q_len]
        ks = k[int(cu_seqlens_k[i]):int(cu_seqlens_k[i]) + k_len]
        vs = v[int(cu_seqlens_k[i]):int(cu_seqlens_k[i]) + k_len]
        outputs.append(_attend(qs[None], ks[None], vs[None], causal, softmax_scale)[0])
    return torch.cat(outputs, dim=0)


def _attend(q, k, v, causal: bool, scale: float | None) -> torch.Tensor:
    """(batch, q_len, heads, d) attention through scaled_dot_product_attention, GQA by repetition."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, len, d)
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    mask = None
    if causal and q.shape[2] != k.shape[2]:
        offset = k.shape[2] - q.shape[2]
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(offset)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale)
    return out.transpose(1, 2)


def flash_attn_with_kvcache(*args, **kwargs):
    raise NotImplementedError("flash_attn_with_kvcache (nanotron's own decoding) has no stand-in: llmt generates "
                              "with a rollout engine (rollout = {name = \"torch\"}); install flash-attn to use "
                              "nanotron's generation")


class RotaryEmbedding(nn.Module):
    """flash_attn's rotary embedding for training (no position offsets). ``interleaved``: GPT-J pairs
    (2i, 2i+1); otherwise GPT-NeoX pairs (i, i + d/2). Angles are computed in fp32, as flash_attn's
    ``pos_idx_in_fp32`` default does; nothing is cached, so the module holds no buffers."""

    def __init__(self, dim: int, base: float = 10000.0, interleaved: bool = False, scale_base=None,
                 pos_idx_in_fp32: bool = True, device=None):
        super().__init__()
        if scale_base is not None:
            raise NotImplementedError("the rotary stand-in has no xPos scaling (scale_base)")
        self.dim, self.base, self.interleaved = dim, float(base), interleaved

    def cos_sin(self, seqlen: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) / self.dim))
        angles = torch.outer(torch.arange(seqlen, device=device, dtype=torch.float32), inv_freq)
        return torch.cos(angles), torch.sin(angles)

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (batch, seqlen, heads, dim) rotated; cos / sin (seqlen, dim / 2)."""
        xf = x.float()
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        if self.interleaved:
            even, odd = xf[..., 0::2], xf[..., 1::2]
            out = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
        else:
            first, second = xf[..., :self.dim // 2], xf[..., self.dim // 2:]
            out = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
        return out.to(x.dtype)

    def forward(self, qkv: torch.Tensor, kv: torch.Tensor | None = None, seqlen_offset: int = 0,
                max_seqlen: int | None = None):
        if seqlen_offset or max_seqlen:
            raise NotImplementedError("the rotary stand-in rotates from position 0 only (training)")
        cos, sin = self.cos_sin(qkv.shape[1], qkv.device)
        if kv is None:  # qkv (batch, seqlen, 3, heads, dim): q and k rotate, v stays
            q, k = self.rotate(qkv[:, :, 0], cos, sin), self.rotate(qkv[:, :, 1], cos, sin)
            return torch.stack((q, k, qkv[:, :, 2]), dim=2)
        q = self.rotate(qkv, cos, sin)  # q (batch, seqlen, heads, dim), kv (batch, seqlen, 2, heads, dim)
        return q, torch.stack((self.rotate(kv[:, :, 0], cos, sin), kv[:, :, 1]), dim=2)


def layer_norm_fn(x, weight, bias, residual=None, eps=1e-6, dropout_p=0.0, prenorm=False, residual_in_fp32=False,
                  is_rms_norm=False, return_dropout_mask=False, **unsupported):
    """LayerNorm or RMSNorm of ``x (+ residual)`` with fp32 statistics; ``prenorm`` also returns the sum."""
    if dropout_p or return_dropout_mask or unsupported:
        raise NotImplementedError("the layer_norm_fn stand-in has no dropout; install flash-attn for it")
    if residual is not None:
        x = x + residual
    summed = x.float() if residual_in_fp32 else x
    xf = x.float()
    if is_rms_norm:
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    else:
        normed = F.layer_norm(xf, xf.shape[-1:], eps=eps)
    out = normed * weight.float()
    if bias is not None:
        out = out + bias.float()
    out = out.to(x.dtype)
    return (out, summed) if prenorm else out
