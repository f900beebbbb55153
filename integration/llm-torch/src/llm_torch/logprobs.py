"""Log-probabilities of the labels straight from the hidden states, without the (B, T, V) logits.

A loss that names ``logprobs`` but not ``logits`` (cross-entropy, DPO, GRPO without entropy...)
only needs log p(label) at the positions whose label counts. The usual path (logits, then
``log_softmax``, then its backward) writes B x T x V floats four times over: the logits, the
log-softmax, a zero-filled gradient and the logits' gradient, each a fresh allocation (64 MB for
8 rows of 256 tokens and an 8k vocabulary; 200 MB for 4 rows and 49k). Here only the scored
positions are projected, a chunk of rows at a time, and each chunk is turned in place into what
the backward needs: ``exp(logit - row max)``, with the row sums. The backward scales that buffer
in place into the logits' gradient, ``g * (onehot(label) - softmax)``, and multiplies it by the
weight and the hidden states. One B x T x V buffer in all, and about a quarter less time for the
output layer and its loss on a 2-core Intel Xeon @ 2.60GHz, AVX-512 (199 -> 152 ms at 2048
rows and an 8k vocabulary). Every product, forward and backward, takes the process's matmul
backend (``linear.matmul``): on an AMD EPYC Zen 4 (AVX-512) with oneDNN the backward's two
products went from 114 ms (MKL) to about 90 ms a step at that shape.

When that buffer would exceed ``KEEP_PROBS_BYTES`` (long sequences, large vocabularies), nothing
of size V is kept: the backward recomputes each chunk's logits, trading one more matmul with the
LM head for memory of one chunk. The result equals ``token_logprobs(lm_head(hidden), labels)`` up
to the order of summation (fp32 throughout). Each graph is differentiated once (the backward
reuses the buffer in place), which is what a training step does.

The kept buffer is reused from step to step (``_Scratch``): a fresh allocation of that size is
mapped page by page on first touch, 16 ms for 64 MB on that Xeon, every step.
``release_scratch`` returns it (``TorchEngine.sleep`` does).
"""

from __future__ import annotations

import weakref

import torch

from llm_torch.linear import matmul

CHUNK_ROWS = 512  # rows projected at once (measured best of 64-1024 at the 8k and 49k vocabularies)
KEEP_PROBS_BYTES = 512 * 2**20  # the largest (rows x vocab) fp32 buffer kept from forward to backward


class _Scratch:
    """One (rows x vocab) fp32 buffer lent to one graph at a time.

    The graph that holds it is known by a weak reference to its autograd context: once that graph
    is freed (after its backward, or dropped without one) the buffer is free again. While it is
    held, a second forward gets a fresh allocation, so two live graphs never share it."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.holder: weakref.ref | None = None

    def take(self, ctx, rows: int, vocab: int, device: torch.device) -> torch.Tensor:
        if self.holder is not None and self.holder() is not None:
            return torch.empty(rows, vocab, dtype=torch.float32, device=device)
        if self.buffer is None or self.buffer.numel() < rows * vocab or self.buffer.device != device:
            self.buffer = None  # freed before the larger one is allocated
            self.buffer = torch.empty(rows * vocab, dtype=torch.float32, device=device)
        self.holder = weakref.ref(ctx)
        return self.buffer[:rows * vocab].view(rows, vocab)


_scratch = _Scratch()


def release_scratch() -> None:
    """Free the buffer kept for the next step (a graph still holding it keeps its own reference)."""
    _scratch.buffer = _scratch.holder = None


def _exp_shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn ``logits`` (rows, V) in place into exp(logits - row max); return (log p(label), row sums)."""
    row_max = logits.amax(dim=1, keepdim=True)
    picked = logits.gather(1, labels[:, None]) - row_max
    sums = logits.sub_(row_max).exp_().sum(dim=1, keepdim=True)
    return (picked - sums.log()).squeeze(1), sums


class _LabelLogprobs(torch.autograd.Function):
    """log_softmax(h W^T)[label] per row; d/dlogits = g * (onehot(label) - softmax), per chunk."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows, vocab = hidden.shape[0], weight.shape[0]
        keep = any(ctx.needs_input_grad[:2]) and rows * vocab * 4 <= KEEP_PROBS_BYTES
        shifted = _scratch.take(ctx, rows, vocab, hidden.device) if keep else None
        out = torch.empty(rows, dtype=torch.float32, device=hidden.device)
        sums = torch.empty(rows, 1, dtype=torch.float32, device=hidden.device)
        for start in range(0, rows, CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            logits = matmul(hidden[part], weight.t(), None if shifted is None else shifted[part]).float()
            out[part], sums[part] = _exp_shifted(logits, labels[part])
        ctx.save_for_backward(hidden, weight, labels, sums, *([] if shifted is None else [shifted]))
        ctx.kept, ctx.used = keep, False
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        if ctx.used:  # the kept buffer was turned into the gradient in place
            raise RuntimeError("label_logprobs: differentiate each graph once (retain_graph is not supported)")
        ctx.used = True
        hidden, weight, labels, sums, *kept = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] and not ctx.kept else None
        for start in range(0, hidden.shape[0], CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            g = grad[part, None].to(torch.float32)
            if ctx.kept:
                shifted = kept[0][part]
            else:
                shifted = matmul(hidden[part], weight.t()).float()
                _exp_shifted(shifted, labels[part])
            dlogits = shifted.mul_(-g / sums[part]).scatter_add_(1, labels[part, None], g).to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[part] = matmul(dlogits, weight)
            if grad_weight is not None:
                matmul(dlogits.t(), hidden[part], grad_weight, accumulate=True)
        if ctx.kept and ctx.needs_input_grad[1]:  # one product over every row: larger, so faster
            grad_weight = matmul(kept[0].to(hidden.dtype).t(), hidden)
        return grad_hidden, grad_weight, None


def label_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                   ignore_index: int = -100) -> torch.Tensor:
    """(B, T) fp32 log p(labels[t]) from hidden states (B, T, H) and the LM head's weight (V, H);
    0 where the label is ``ignore_index``. Only the scored positions are projected."""
    keep = labels != ignore_index
    if bool(keep.all()):  # every position scored (pretraining): no gather and scatter of rows
        flat = _LabelLogprobs.apply(hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1))
        return flat.view(labels.shape)
    out = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
    if keep.any():
        out = out.index_put((keep.nonzero(as_tuple=True)), _LabelLogprobs.apply(hidden[keep], weight, labels[keep]))
    return out
