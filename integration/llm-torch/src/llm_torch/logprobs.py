"""Log-probabilities of the labels straight from the hidden states, without the (B, T, V) logits.

A loss that names ``logprobs`` but not ``logits`` (DPO, GRPO without entropy, reward-free
losses) only needs log p(label) at the positions whose label counts. Projecting all B x T
positions through the LM head and taking a full log-softmax costs B x T x V floats three times
over (logits, log-softmax, their gradient): 0.8 GB each for 16 rows of 256 tokens with a
49k-token vocabulary. Here only the scored positions are projected, in chunks of rows, and the
backward recomputes each chunk's logits instead of keeping them: memory is one chunk of logits,
and prompt positions cost nothing. The result equals ``token_logprobs(lm_head(hidden), labels)``
up to the order of summation (fp32 throughout).
"""

from __future__ import annotations

import torch

from llm_torch.linear import onednn_linear, use_onednn

CHUNK_ROWS = 1024  # rows of logits alive at once: 1024 x 49k fp32 = 200 MB


def _project(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if use_onednn(hidden, weight):
        return onednn_linear(hidden, weight)
    return hidden @ weight.t()


class _LabelLogprobs(torch.autograd.Function):
    """log_softmax(h W^T)[label] per row; d/dlogits = onehot(label) - softmax, per chunk."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], CHUNK_ROWS):
            logits = _project(hidden[start:start + CHUNK_ROWS], weight).float()
            picked = logits.gather(1, labels[start:start + CHUNK_ROWS, None]).squeeze(1)
            out[start:start + CHUNK_ROWS] = picked - torch.logsumexp(logits, dim=-1)
        ctx.save_for_backward(hidden, weight, labels)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden, weight, labels = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        for start in range(0, hidden.shape[0], CHUNK_ROWS):
            rows = hidden[start:start + CHUNK_ROWS]
            g = grad[start:start + CHUNK_ROWS, None]
            dlogits = torch.softmax(_project(rows, weight).float(), dim=-1).mul_(-g)
            dlogits.scatter_add_(1, labels[start:start + CHUNK_ROWS, None], g)
            dlogits = dlogits.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[start:start + CHUNK_ROWS] = dlogits @ weight
            if grad_weight is not None:
                grad_weight += dlogits.t() @ rows
        return grad_hidden, grad_weight, None


def label_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                   ignore_index: int = -100) -> torch.Tensor:
    """(B, T) fp32 log p(labels[t]) from hidden states (B, T, H) and the LM head's weight (V, H);
    0 where the label is ``ignore_index``. Only the scored positions are projected."""
    keep = labels != ignore_index
    out = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
    if keep.any():
        out = out.index_put((keep.nonzero(as_tuple=True)), _LabelLogprobs.apply(hidden[keep], weight, labels[keep]))
    return out
