"""Batched generation with a KV cache: temperature / top-k / top-p, n samples per prompt, stop tokens.

Prompts of different lengths are left-padded and masked, so every row decodes in lock step; rows
that stop leave the batch (and the cache) once they are a quarter of it. The
logprob reported for each sampled token is the model's own ``log_softmax`` at temperature 1 (before
temperature, top-k or top-p), which is what a teacher-forced pass over the same tokens computes and
what RL importance ratios need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from llm_core.specs import SamplingSpec
from llm_core.types import Sample
from llm_torch.decode import DecodeWeights, DecodeWeightsCache
from llm_torch.model import KVCache, LlamaModel, padding_mask


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Apply temperature, then keep the top-k tokens, then the top-p nucleus (see ``nucleus_size``).

    The reference definition of the filtering (a full sort); ``choose_tokens`` computes the same
    nucleus without sorting indices and is what generation uses. Ties in probability are ordered
    by token id, as a stable sort would order them.
    """
    logits = _top_k(logits / temperature, top_k)
    if top_p < 1.0:
        probs = logits.softmax(-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        ranks = torch.arange(probs.shape[-1], device=probs.device).expand_as(probs)
        drop_sorted = ranks >= nucleus_size(sorted_probs, top_p)
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def nucleus_size(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """How many of the ranked tokens (R, V), most probable first, form the top-p nucleus: (R, 1).

    The promise, the same on every CPU and kernel: a ranked token is in the nucleus when the mass
    ranked before it, summed in float64 from the most probable token down (a sequential sum of the
    float32 probabilities, which no vector kernel reorders), is below ``top_p`` and its own
    probability is not zero (a token removed by top-k or underflow never returns, even when the
    float32 probabilities sum to less than ``top_p``). At least the most probable token is kept.

    The float64 sum runs only over the columns that can matter: a float32 cumulative sum in any
    order is within V * 2**-23 of the exact one, so columns whose float32 mass before them exceeds
    ``top_p`` by more than that can be in no row's nucleus.
    """
    vocab = sorted_probs.shape[-1]
    approx_through = sorted_probs.cumsum(-1)  # float32: mass up to and including each token
    slack = vocab * 2.0 ** -23
    # Columns whose float32 mass through them is below top_p + slack (a count: the sums only grow).
    below = torch.searchsorted(approx_through, torch.full_like(approx_through[..., :1], top_p + slack))
    width = min(vocab, int(below.max()) + 1)
    head = sorted_probs[..., :width]
    exact_through = head.cumsum(-1, dtype=torch.float64)
    # Rank r > 0 is in when the mass before it, exact_through[r - 1], is below top_p, and its
    # probability is not zero. Both are prefixes (mass grows, probabilities fall), so each is a
    # count, found by binary search where the values are sorted; rank 0 is always in.
    by_mass = 1 + torch.searchsorted(exact_through[..., :-1].contiguous(),
                                     torch.full_like(exact_through[..., :1], top_p))
    if bool((head[..., -1] == 0).any()):  # zeros inside the head: the nucleus ends before them
        by_mass = torch.minimum(by_mass, (head > 0).sum(-1, keepdim=True))
    return by_mass.clamp(min=1)


def choose_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                  uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row from fp32 ``logits`` (R, V): the distribution of ``filter_logits``, drawn
    with ``uniforms`` (R, 1), one float64 uniform number in [0, 1) per row.

    Faster than sorting and ``torch.multinomial``, and exact: the nucleus is found from the sorted
    probabilities alone (a values-only sort is several times cheaper than an argsort), and the
    token by inverse-CDF sampling with the row's uniform number.
    """
    probs = _top_k(logits / temperature if temperature != 1.0 else logits, top_k).softmax(-1)
    if top_p < 1.0:
        probs = probs * nucleus_mask(probs, top_p)
    return inverse_cdf_sample(probs, uniforms)


def nucleus_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Boolean mask (R, V) of the top-p nucleus of each row, the same tokens as ``filter_logits``.

    The nucleus is the ``size`` most probable tokens (``nucleus_size``). That is every token above
    the size-th largest probability, plus as many tokens equal to it as are needed, lowest token
    ids first.
    """
    sorted_probs = _sort_descending(probs)
    size = nucleus_size(sorted_probs, top_p)
    threshold = sorted_probs.gather(-1, size - 1)
    at_least = probs >= threshold
    # No tie at the threshold is left out (the usual case) when the next ranked value is below it.
    next_value = sorted_probs.gather(-1, size.clamp(max=probs.shape[-1] - 1))
    if bool(((size == probs.shape[-1]) | (next_value < threshold)).all()):
        return at_least
    # Ties cut by the nucleus: keep the first ``places`` of each row's tied tokens, by token id.
    # Ranked values above the threshold are a prefix of the sorted row, counted by binary search.
    above_count = torch.searchsorted(-sorted_probs, -threshold)  # -sorted is ascending
    places = (size - above_count).squeeze(-1)
    rows, ids = torch.nonzero(probs == threshold, as_tuple=True)  # row-major: ids ascend in a row
    per_row = torch.bincount(rows, minlength=probs.shape[0])
    starts = per_row.cumsum(0) - per_row  # where each row's ties begin in the list
    keep = torch.arange(len(rows), device=probs.device) - starts[rows] < places[rows]
    mask = probs > threshold
    mask[rows[keep], ids[keep]] = True
    return mask


def _sort_descending(probs: torch.Tensor) -> torch.Tensor:
    """Sorted values only. On CPU numpy's vectorised sort is much faster than ``torch.sort`` (which
    also computes indices); negating twice gives a descending order with exactly the same values."""
    if probs.device.type != "cpu":
        return torch.sort(probs, dim=-1, descending=True).values
    return torch.from_numpy(-np.sort(-probs.numpy(), axis=-1))


def inverse_cdf_sample(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Index i of each row with probability weights[i] / sum(weights): the first index whose
    cumulative weight exceeds the row's uniform number (``uniforms``, (R, 1) in [0, 1)) times the
    total. Accumulated in float64; the target is kept strictly below the total so rounding can never
    select past the last non-zero weight."""
    cdf = weights.double().cumsum(-1)
    total = cdf[:, -1:]
    target = torch.minimum(uniforms * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).squeeze(-1)


# Finished rows leave the decoding batch once they are this share of it: copying the live rows'
# cache costs about one step's attention over it, so it is paid only for a real saving.
COMPACT_SHARE = 0.25


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt):] = 1
    return ids, mask


@torch.inference_mode()
def generate(model: LlamaModel, prompt_ids: Sequence[Sequence[int]], n: int, sampling: SamplingSpec,
             *, pad_id: int, stop_ids: Sequence[int] = (),
             decode: Callable[[list[int]], str] | None = None,
             decode_weights: DecodeWeightsCache | None = None) -> list[list[Sample]]:
    """``n`` samples for each prompt, in prompt order. Stop tokens end a sample and are kept in it.

    ``decode_weights`` keeps the weights prepared for decoding from call to call (``decode.py``);
    without it each call prepares its own."""
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("generate: every prompt needs at least one token (a BOS or a chat header)")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    stops = torch.tensor(sorted(set(stop_ids) | set(sampling.stop_token_ids)) or [-1], device=device)
    generator = torch.Generator(device=device)
    if sampling.seed is not None:
        generator.manual_seed(sampling.seed)
    else:
        generator.seed()

    ids, prompt_mask = (t.to(device) for t in _left_pad(prompt_ids, pad_id))
    batch, width = ids.shape
    total = width + sampling.max_new_tokens
    weights = decode_weights.get(model, batch * n) if decode_weights is not None else DecodeWeights.of(model, batch * n)
    cache = KVCache(model.config, batch, total, dtype, device, weights=weights)
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    no_padding = bool(prompt_mask.all())
    hidden = model.hidden(ids, positions, None if no_padding else padding_mask(prompt_mask, width), cache)
    logits = cache.weights.lm_head(hidden[:, -1])  # only the last position's logits are needed
    # Prefill each prompt once, then copy its cache row for its n samples.
    rows = torch.arange(batch, device=device).repeat_interleave(n)
    cache.reorder(rows)
    logits, last_pos = logits[rows], positions[rows, -1]
    # Keys visible to the next query: the prompt's real tokens, then every generated token.
    mask = torch.ones((len(rows), total), dtype=torch.bool, device=device)
    mask[:, :width] = prompt_mask[rows].bool()

    # Each step records a token and its logprob for every row (the pad token and 0 for a finished
    # row); ``live`` are the rows still decoding, the only ones the model runs on.
    count = len(rows)
    live = torch.arange(count, device=device)
    tokens, logprobs = [], []
    finished = torch.zeros(count, dtype=torch.bool, device=device)  # of the live rows
    for _ in range(sampling.max_new_tokens):
        logits = logits.float()
        if sampling.temperature == 0:
            token = logits.argmax(-1)
        else:  # a uniform number for every row of the batch, live or not: a row's draws never depend
            # on when the others finish
            uniforms = torch.rand((count, 1), generator=generator, dtype=torch.float64, device=device)
            token = choose_tokens(logits, sampling.temperature, sampling.top_k, sampling.top_p, uniforms[live])
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        logprob = logits.log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
        tokens.append(torch.full((count,), pad_id, dtype=token.dtype, device=device).index_copy_(0, live, token))
        logprobs.append(torch.zeros(count, dtype=logprob.dtype, device=device).index_copy_(0, live, logprob))
        finished |= torch.isin(token, stops)
        done = int(finished.sum())
        if done == len(live):
            break
        if done >= COMPACT_SHARE * len(live):
            # Drop the finished rows from the batch and their keys and values from the cache: a
            # decoding step costs about its row count (weights, attention over the cache).
            keep = (~finished).nonzero().squeeze(-1)
            cache.reorder(keep)
            live, token, last_pos, mask, finished = live[keep], token[keep], last_pos[keep], mask[keep], finished[keep]
        last_pos = last_pos + 1
        step_mask = mask[:, None, None, :cache.length + 1]  # (R, 1, 1, keys): one query per row
        logits = model(token[:, None], last_pos[:, None], step_mask, cache)[:, -1]
    return _collect(prompt_ids, n, tokens, logprobs, stops, decode)


def _collect(prompt_ids, n, tokens, logprobs, stops, decode) -> list[list[Sample]]:
    token_rows = torch.stack(tokens, 1).tolist() if tokens else [[] for _ in range(len(prompt_ids) * n)]
    logprob_rows = torch.stack(logprobs, 1).tolist() if logprobs else token_rows
    stop_set = set(stops.tolist())
    out: list[list[Sample]] = []
    for p, prompt in enumerate(prompt_ids):
        group = []
        for row in range(p * n, (p + 1) * n):
            ids, lps, reason = [], [], "length"
            for token, lp in zip(token_rows[row], logprob_rows[row], strict=True):
                ids.append(token)
                lps.append(lp)
                if token in stop_set:
                    reason = "stop"
                    break
            text = decode(ids) if decode else ""
            group.append(Sample(prompt_ids=list(prompt), token_ids=ids, logprobs=lps, text=text,
                                finish_reason=reason))
        out.append(group)
    return out
