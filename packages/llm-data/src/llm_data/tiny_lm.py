"""A byte-level causal transformer small enough to train on a CPU in seconds, and DoReMi's loops.

DoReMi needs two models' per-token losses at every step and a domain-weighted loss; a model this
small (two layers, 64 wide, bytes as tokens so no tokenizer is involved) makes the stage a few
seconds of CPU. torch is imported inside the functions (``llm-data[doremi]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_data.doremi import domain_excess_loss, doremi_update


@dataclass(frozen=True)
class TinyLMSpec:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    seq_len: int = 64
    batch_size: int = 16
    lr: float = 3e-3


def build_model(spec: TinyLMSpec, seed: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class ByteLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(256, spec.d_model)
            self.position = nn.Embedding(spec.seq_len, spec.d_model)
            layer = nn.TransformerEncoderLayer(spec.d_model, spec.n_heads, 4 * spec.d_model, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, spec.n_layers, enable_nested_tensor=False)
            self.head = nn.Linear(spec.d_model, 256)
            self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(spec.seq_len))

        def forward(self, ids):
            n = ids.shape[1]
            x = self.embed(ids) + self.position(torch.arange(n))
            return self.head(self.blocks(x, mask=self.causal[:n, :n], is_causal=True))

    return ByteLM()


def token_losses(model: Any, windows: Any) -> Any:
    """Per-token next-byte cross-entropy, (rows, seq_len)."""
    import torch.nn.functional as F

    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")


def sample_batch(domains: list[np.ndarray], counts: np.ndarray, seq_len: int, rng: np.random.Generator):
    """Random windows of seq_len + 1 bytes: ``counts[i]`` rows from domain i. Returns (windows, ids)."""
    import torch

    rows, ids = [], []
    for d, (data, count) in enumerate(zip(domains, counts, strict=True)):
        for start in rng.integers(0, len(data) - seq_len - 1, size=int(count)):
            rows.append(data[start: start + seq_len + 1])
            ids.append(d)
    return torch.as_tensor(np.stack(rows).astype(np.int64)), np.asarray(ids)


def train_reference(domains: list[np.ndarray], weights: np.ndarray, steps: int, spec: TinyLMSpec,
                    seed: int) -> tuple[Any, list[float]]:
    """The reference model, trained on a fixed mixture (domain rows drawn by ``weights``)."""
    import torch

    model = build_model(spec, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        counts = rng.multinomial(spec.batch_size, weights)
        windows, _ = sample_batch(domains, counts, spec.seq_len, rng)
        loss = token_losses(model, windows).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def train_proxy(domains: list[np.ndarray], reference: Any, steps: int, spec: TinyLMSpec, seed: int,
                step_size: float, smoothing: float) -> dict[str, Any]:
    """DoReMi Algorithm 1: each step updates the domain weights, then the proxy on the weighted loss."""
    import torch

    k = len(domains)
    model = build_model(spec, seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    rng = np.random.default_rng(seed + 1)
    weights = np.full(k, 1.0 / k)
    history, excess_history = [], []
    per_domain = np.full(k, spec.batch_size // k)  # the paper samples the minibatch uniformly
    per_domain[: spec.batch_size - per_domain.sum()] += 1
    for _ in range(steps):
        windows, domain_ids = sample_batch(domains, per_domain, spec.seq_len, rng)
        proxy_loss = token_losses(model, windows)
        with torch.no_grad():
            reference_loss = token_losses(reference, windows)
        excess = domain_excess_loss(proxy_loss.detach().numpy(), reference_loss.numpy(), domain_ids, k)
        weights = doremi_update(weights, excess, step_size, smoothing)
        # Objective: sum_i alpha_i * (mean token loss of domain i); the reference term has no gradient.
        row_weight = torch.as_tensor(weights[domain_ids] / per_domain[domain_ids], dtype=torch.float32)
        loss = (proxy_loss.mean(dim=1) * row_weight).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(weights.tolist())
        excess_history.append(excess.tolist())
    return {"weights": np.mean(history, axis=0), "history": history, "excess": excess_history}
