"""Batched generation with a KV cache: temperature / top-k / top-p, n samples per prompt, stop tokens.

Prompts of different lengths are left-padded and masked, so every row decodes in lock step. The
logprob reported for each sampled token is the model's own ``log_softmax`` at temperature 1 (before
temperature, top-k or top-p), which is what a teacher-forced pass over the same tokens computes and
what RL importance ratios need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from llm_core.types import Sample, SamplingParams
from llm_torch.model import KVCache, LlamaModel, padding_mask


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Apply temperature, then keep the top-k tokens, then the smallest nucleus of mass top_p."""
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        # Drop a token when the mass before it already reaches top_p (the first token always stays).
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


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
def generate(model: LlamaModel, prompt_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams,
             *, pad_id: int, stop_ids: Sequence[int] = (),
             decode: Callable[[list[int]], str] | None = None) -> list[list[Sample]]:
    """``n`` samples for each prompt, in prompt order. Stop tokens end a sample and are kept in it."""
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
    cache = KVCache(model.config, batch, total, dtype, device)
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    no_padding = bool(prompt_mask.all())
    hidden = model.hidden(ids, positions, None if no_padding else padding_mask(prompt_mask, width), cache)
    logits = model.lm_head(hidden[:, -1])  # only the last position's logits are needed
    # Prefill each prompt once, then copy its cache row for its n samples.
    rows = torch.arange(batch, device=device).repeat_interleave(n)
    cache.reorder(rows)
    logits, last_pos = logits[rows], positions[rows, -1]
    # Keys visible to the next query: the prompt's real tokens, then every generated token.
    mask = torch.ones((len(rows), total), dtype=torch.bool, device=device)
    mask[:, :width] = prompt_mask[rows].bool()

    tokens, logprobs = [], []
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    for _ in range(sampling.max_new_tokens):
        logits = logits.float()
        if sampling.temperature == 0:
            token = logits.argmax(-1)
        else:
            filtered = filter_logits(logits, sampling.temperature, sampling.top_k, sampling.top_p)
            token = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens.append(token)
        logprobs.append(logits.log_softmax(-1).gather(-1, token[:, None]).squeeze(-1))
        finished |= torch.isin(token, stops)
        if bool(finished.all()):
            break
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
