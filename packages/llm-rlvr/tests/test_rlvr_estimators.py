"""Parity of every advantage estimator and policy loss with a naive, loop-based reference.

The references below are written from the papers' formulas with Python floats and loops, and
share no code with the implementations under test.
"""

from __future__ import annotations

import math
import random

import pytest

from llm_core.plugins import PluginHost

torch = pytest.importorskip("torch")


def _rewards(groups=5, k=4, seed=0):
    rng = random.Random(seed)
    return [[rng.choice([0.0, 0.0, 1.0, 0.5, rng.random()]) for _ in range(k)] for _ in range(groups)]


def _std(values):  # unbiased sample std
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def naive_grpo(rows, eps=1e-6, normalize=True):
    out = []
    for row in rows:
        m = sum(row) / len(row)
        s = _std(row)
        out.append([(r - m) / (s + eps) if normalize else r - m for r in row])
    return out


def naive_rloo(rows):
    out = []
    for row in rows:
        out.append([r - sum(row[j] for j in range(len(row)) if j != i) / (len(row) - 1)
                    for i, r in enumerate(row)])
    return out


def naive_reinforce_pp(rows, eps=1e-6, baseline=False):
    if baseline:
        rows = [[r - sum(row) / len(row) for r in row] for row in rows]
    flat = [r for row in rows for r in row]
    m = 0.0 if baseline else sum(flat) / len(flat)
    s = _std([r - m for r in flat])
    return [[(r - m) / (s + eps) for r in row] for row in rows]


@pytest.fixture(scope="module")
def registries():
    return PluginHost.discover().registries


@pytest.mark.parametrize("name,options,reference", [
    ("grpo", {}, naive_grpo),
    ("grpo", {"normalize_std": False}, lambda r: naive_grpo(r, normalize=False)),
    ("dr_grpo", {}, lambda r: naive_grpo(r, normalize=False)),
    ("rloo", {}, naive_rloo),
    ("reinforce_pp", {}, naive_reinforce_pp),
    ("reinforce_pp", {"group_baseline": True}, lambda r: naive_reinforce_pp(r, baseline=True)),
])
def test_estimator_parity(registries, name, options, reference):
    """float64 rewards give float64 advantages equal to the naive formula to 1e-12 (no hidden cast
    to float32); float32 rewards stay float32."""
    estimator = registries.advantage_estimators.build(name, options)
    for seed in range(3):
        rows = _rewards(seed=seed)
        out = estimator(torch.tensor(rows, dtype=torch.float64))
        assert out.dtype == torch.float64
        want = reference(rows)
        for g_row, w_row in zip(out.tolist(), want, strict=True):
            assert g_row == pytest.approx(w_row, abs=1e-12)
        assert estimator(torch.tensor(rows, dtype=torch.float32)).dtype == torch.float32
    assert estimator(torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0]])).dtype == torch.float32  # integer rewards


def test_grpo_constant_group_gives_zero_advantage(registries):
    adv = registries.advantage_estimators.build("grpo")(torch.ones(3, 4))
    assert torch.count_nonzero(adv) == 0


def test_rloo_rejects_single_sample_groups(registries):
    with pytest.raises(ValueError, match="at least 2"):
        registries.advantage_estimators.build("rloo")(torch.ones(3, 1))


# -- policy losses ------------------------------------------------------------------------------


def naive_policy_loss(logp, old, ref, adv, mask, clip_low, clip_high, kl_coef, aggregation, budget):
    """Loop over every token; returns (loss, clip_fraction)."""
    token_losses, per_seq, clipped, total = [], [], 0, 0
    for b in range(len(logp)):
        seq_terms = []
        for t in range(len(logp[b])):
            if not mask[b][t]:
                continue
            ratio = math.exp(logp[b][t] - old[b][t])
            low, high = 1 - clip_low, 1 + clip_high
            surr1 = ratio * adv[b]
            surr2 = min(max(ratio, low), high) * adv[b]
            term = -min(surr1, surr2)
            clipped += surr2 < surr1
            total += 1
            if kl_coef:
                d = ref[b][t] - logp[b][t]
                term += kl_coef * (math.exp(d) - d - 1)
            seq_terms.append(term)
            token_losses.append(term)
        per_seq.append(sum(seq_terms) / max(len(seq_terms), 1))
    if aggregation == "token_mean":
        loss = sum(token_losses) / len(token_losses)
    elif aggregation == "sequence_mean":
        loss = sum(per_seq) / len(per_seq)
    else:
        loss = sum(token_losses) / (len(logp) * budget)
    return loss, clipped / total


def _loss_batch(seed, b=4, t=7):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    old = logp + (torch.rand(b, t, generator=g, dtype=torch.float64) - 0.5) * 0.8
    ref = logp + (torch.rand(b, t, generator=g, dtype=torch.float64) - 0.5) * 0.5
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = [t, 3, 5, 1]
    mask = torch.tensor([[1.0 if i < n else 0.0 for i in range(t)] for n in lengths[:b]], dtype=torch.float64)
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("name,options", [
    ("grpo", {}),
    ("grpo", {"aggregation": "sequence_mean", "kl_coef": 0.04}),
    ("grpo", {"aggregation": "token_mean", "kl_coef": 0.1, "clip_high": 0.28}),
    ("grpo", {"aggregation": "constant", "max_tokens": 16}),
    ("dr_grpo", {"max_tokens": 10, "kl_coef": 0.01}),
])
def test_policy_loss_parity(registries, name, options):
    loss_fn = registries.losses.build(name, options)
    cfg = registries.losses.get(name).parse(options)
    aggregation = getattr(cfg, "aggregation", "constant")
    for seed in range(3):
        logp, old, ref, adv, mask = _loss_batch(seed)
        loss, metrics = loss_fn(logp, old, adv, mask, ref_logprobs=ref)
        want, clip_fraction = naive_policy_loss(
            logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(), cfg.clip_low,
            cfg.clip_high, cfg.kl_coef, aggregation, cfg.max_tokens or logp.shape[1])
        assert loss.item() == pytest.approx(want, rel=1e-9)
        assert metrics["clip_fraction"].item() == pytest.approx(clip_fraction)


def test_policy_loss_gradient_is_advantage_weighted(registries):
    """On-policy (ratio 1, no clipping) the gradient wrt each logprob is -A / n_tokens."""
    loss_fn = registries.losses.build("grpo")
    logp = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    loss, _ = loss_fn(logp, logp.detach(), adv, torch.ones(2, 3))
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-1 / 6] * 3, [2 / 6] * 3], dtype=torch.float64))


def test_kl_needs_reference(registries):
    loss_fn = registries.losses.build("grpo", {"kl_coef": 0.1})
    logp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ref_logprobs"):
        loss_fn(logp, logp, torch.ones(1), torch.ones(1, 2))
