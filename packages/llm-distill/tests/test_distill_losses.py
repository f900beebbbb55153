"""Parity of the distillation losses with naive references written here, position by position in
float64 Python, and with TRL's ``GKDTrainer.generalized_jsd_loss`` itself."""

from __future__ import annotations

import math
import os

import pytest
import torch

from llm_distill import losses as L

B, T, V = 3, 5, 11


def _inputs(seed: int = 0, k: int = V):
    g = torch.Generator().manual_seed(seed)
    student_logits = torch.randn(B, T, V, generator=g) * 2
    teacher_logits = torch.randn(B, T, V, generator=g) * 2
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :2] = -100  # a prompt
    labels[2, 3:] = -100  # padding
    values, ids = torch.log_softmax(teacher_logits, -1).topk(k, dim=-1)
    return student_logits, teacher_logits, labels, values, ids


def _engine_inputs(student_logits, labels):
    """What the engine hands a loss: ``logprobs`` (0 where ignored) and ``mask``."""
    mask = (labels != -100).float()
    picked = torch.log_softmax(student_logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return picked * mask, mask


def _softmax(row, temperature):
    z = [x / temperature for x in row]
    top = max(z)
    e = [math.exp(x - top) for x in z]
    return [x / sum(e) for x in e]


def _buckets(teacher_row, student_row, k, temperature):
    """Naive top-k buckets: the teacher's k best tokens and, below the vocabulary, one rest bucket
    whose teacher mass at T is tempered as if spread evenly over the rest."""
    p1 = _softmax(teacher_row, 1.0)
    q = _softmax(student_row, temperature)
    order = sorted(range(len(p1)), key=lambda i: -p1[i])[:k]
    if k == len(p1):
        return _softmax(teacher_row, temperature), q, order
    rest = 1 - sum(p1[i] for i in order)
    n = len(p1) - k
    weights = [p1[i] ** (1 / temperature) for i in order] + [n * (rest / n) ** (1 / temperature)]
    p = [w / sum(weights) for w in weights]
    qb = [q[i] for i in order] + [1 - sum(q[i] for i in order)]
    return p, qb, None


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _naive_divergence(p, q, kind, beta):
    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return _kl(p, q)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        return _kl(q, p)
    m = [beta * a + (1 - beta) * b for a, b in zip(p, q, strict=True)]
    return beta * _kl(p, m) + (1 - beta) * _kl(q, m)


def _naive_loss(student_logits, teacher_logits, labels, k, kind, beta, temperature, alpha, reduction):
    per_row = []
    for b in range(B):
        values = []
        for t in range(T):
            if labels[b, t] == -100:
                continue
            teacher_row, student_row = teacher_logits[b, t].tolist(), student_logits[b, t].tolist()
            p, q, order = _buckets(teacher_row, student_row, k, temperature)
            if order is not None:
                q = [q[i] for i in order]
                p = [p[i] for i in order]
            d = _naive_divergence(p, q, kind, beta)
            ce = -math.log(_softmax(student_row, 1.0)[int(labels[b, t])])
            values.append((1 - alpha) * temperature ** 2 * d + alpha * ce)
        per_row.append(values)
    if reduction == "token_mean":
        flat = [v for row in per_row for v in row]
        return sum(flat) / len(flat)
    rows = [row for row in per_row if row]
    if reduction == "sequence_mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    return sum(sum(r) for r in rows) / len(rows)


CASES = [
    ("forward_kl", 0.5, 1.0, 0.0, "token_mean", V),
    ("forward_kl", 0.5, 2.0, 0.0, "token_mean", V),
    ("forward_kl", 0.5, 2.0, 0.3, "sequence_mean", 4),
    ("reverse_kl", 0.5, 1.0, 0.0, "sequence_sum", V),
    ("reverse_kl", 0.5, 0.7, 0.5, "token_mean", 3),
    ("jsd", 0.5, 1.0, 0.0, "token_mean", V),
    ("jsd", 0.1, 1.5, 0.2, "sequence_mean", 5),
    ("jsd", 0.9, 1.0, 0.0, "sequence_sum", 2),
    ("jsd", 0.0, 1.0, 0.0, "token_mean", V),
    ("jsd", 1.0, 1.0, 0.0, "token_mean", 6),
]


@pytest.mark.parametrize("kind, beta, temperature, alpha, reduction, k", CASES)
def test_losses_match_naive_reference(kind, beta, temperature, alpha, reduction, k):
    student_logits, teacher_logits, labels, values, ids = _inputs(seed=hash((kind, beta, k)) % 1000, k=k)
    logprobs, mask = _engine_inputs(student_logits, labels)
    options = {"temperature": temperature, "alpha": alpha, "reduction": reduction}
    if kind == "jsd":
        loss_fn = L.jsd(L.JsdLossConfig(beta=beta, **options))
    else:
        loss_fn = getattr(L, kind)(L.DistillLossConfig(**options))
    loss, metrics = loss_fn(student_logits, logprobs, mask, values, ids)
    expected = _naive_loss(student_logits.double(), teacher_logits.double(), labels, k, kind, beta, temperature,
                           alpha, reduction)
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert 0 < metrics["teacher_topk_mass"] <= 1 + 1e-6
    if k == V:
        assert metrics["teacher_topk_mass"] == pytest.approx(1.0, abs=1e-5)


def test_top_k_equal_to_vocabulary_is_the_full_divergence():
    """k = V: the bucket form is exactly the divergence over the whole vocabulary, in any token order."""
    student_logits, teacher_logits, labels, values, ids = _inputs(seed=3)
    teacher, student = L.bucket_logprobs(student_logits, values, ids)
    full = L.kl(torch.log_softmax(teacher_logits, -1), torch.log_softmax(student_logits, -1))
    assert torch.allclose(L.kl(teacher, student), full, atol=1e-5)
    shuffled = torch.randperm(V)
    teacher2, student2 = L.bucket_logprobs(student_logits, values[..., shuffled], ids[..., shuffled])
    assert torch.allclose(L.kl(teacher2, student2), full, atol=1e-5)


def test_rest_bucket_shrinks_the_divergence_towards_the_full_one():
    """Fewer teacher tokens merge more of the vocabulary: the divergence can only fall (data
    processing inequality), and reaches the full one at k = V."""
    student_logits, teacher_logits, *_ = _inputs(seed=4)
    logp = torch.log_softmax(teacher_logits, -1)
    previous = None
    for k in range(1, V + 1):
        values, ids = logp.topk(k, dim=-1)
        d = L.kl(*L.bucket_logprobs(student_logits, values, ids)).sum()
        if previous is not None:
            assert d >= previous - 1e-5
        previous = d
    assert previous == pytest.approx(L.kl(logp, torch.log_softmax(student_logits, -1)).sum().item(), rel=1e-5)


def test_hinton_temperature_squared_scaling():
    """The loss is T^2 times the tempered divergence, so its gradient keeps its scale as T grows
    (Hinton et al. 2015: the soft targets' gradients scale as 1/T^2)."""
    student_logits, _, labels, values, ids = _inputs(seed=5)
    logprobs, mask = _engine_inputs(student_logits, labels)
    grads = {}
    for temperature in (1.0, 4.0, 8.0):
        logits = (student_logits * 0.1).requires_grad_(True)  # a student near the teacher's scale
        loss, metrics = L.forward_kl(L.DistillLossConfig(temperature=temperature))(logits, logprobs, mask,
                                                                                   values, ids)
        assert loss.item() == pytest.approx(temperature ** 2 * metrics["kd"].item(), rel=1e-6)
        loss.backward()
        grads[temperature] = logits.grad.norm().item()
    assert 0.5 < grads[8.0] / grads[4.0] < 2.0, grads


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_jsd_matches_trl_generalized_jsd(beta, temperature):
    """TRL's GKD loss (full vocabulary, token mean over labels, no T^2) against ours at k = V."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the module warns that its API may change
    gkd = pytest.importorskip("trl.experimental.gkd")
    student_logits, teacher_logits, labels, values, ids = _inputs(seed=6)
    logprobs, mask = _engine_inputs(student_logits, labels)
    ours_logits = student_logits.clone().requires_grad_(True)
    ours, _ = L.jsd(L.JsdLossConfig(beta=beta, temperature=temperature))(ours_logits, logprobs, mask, values, ids)
    trl_logits = student_logits.clone().requires_grad_(True)
    theirs = gkd.GKDTrainer.generalized_jsd_loss(trl_logits, teacher_logits, labels=labels, beta=beta,
                                                 temperature=temperature)
    assert (ours / temperature ** 2).item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-6)
    ours.backward()
    (theirs * temperature ** 2).backward()
    assert torch.allclose(ours_logits.grad, trl_logits.grad, atol=1e-6)


def test_reductions_weigh_tokens_and_sequences():
    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert L.reduce(per_token, mask, "token_mean").item() == pytest.approx(7 / 5)
    assert L.reduce(per_token, mask, "sequence_mean").item() == pytest.approx((1 + 3) / 2)
    assert L.reduce(per_token, mask, "sequence_sum").item() == pytest.approx((4 + 3) / 2)
    empty = torch.zeros(2, 4)
    assert L.reduce(per_token, empty, "token_mean").item() == 0.0


def _naive_minillm(student_logits, teacher_logits, labels, length_normalize):
    """Single-step reverse KL per position plus -R_{t+1} log q(y_t), token mean; R from full vocab."""
    total, count = 0.0, 0
    for b in range(B):
        positions = [t for t in range(T) if labels[b, t] != -100]
        log_q = {t: math.log(_softmax(student_logits[b, t].tolist(), 1.0)[int(labels[b, t])]) for t in positions}
        log_p = {t: math.log(_softmax(teacher_logits[b, t].tolist(), 1.0)[int(labels[b, t])]) for t in positions}
        for i, t in enumerate(positions):
            q = _softmax(student_logits[b, t].tolist(), 1.0)
            p = _softmax(teacher_logits[b, t].tolist(), 1.0)
            future = [log_p[s] - log_q[s] for s in positions[i + 1:]]
            reward = sum(future) / (len(future) if length_normalize and future else 1)
            total += _kl(q, p) - reward * log_q[t]
            count += 1
    return total / count


@pytest.mark.parametrize("length_normalize", [True, False])
def test_minillm_matches_naive_reference(length_normalize):
    student_logits, teacher_logits, labels, values, ids = _inputs(seed=7)
    logprobs, mask = _engine_inputs(student_logits, labels)
    loss_fn = L.minillm(L.MiniLlmConfig(length_normalize=length_normalize))
    loss, metrics = loss_fn(student_logits, logprobs, labels.clamp(min=0), mask, values, ids)
    expected = _naive_minillm(student_logits.double(), teacher_logits.double(), labels, length_normalize)
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert metrics["reverse_kl_samples"].item() == pytest.approx(
        (((logprobs - torch.log_softmax(teacher_logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0])
          * mask).sum() / mask.sum()).item(), rel=1e-5)


def test_minillm_terms_push_the_right_way():
    """The single-step term alone drives the student to the teacher (reverse KL falls below half);
    the long-term term raises log q of a sampled token whose future tokens the teacher likes."""
    student_logits, teacher_logits, labels, values, ids = _inputs(seed=8)
    mask = (labels != -100).float()
    target = labels.clamp(min=0)

    def reverse(logits):
        return L.reduce(L.kl(torch.log_softmax(logits, -1), torch.log_softmax(teacher_logits, -1)), mask,
                        "token_mean").item()

    logits = student_logits.clone().requires_grad_(True)
    single_only = L.minillm(L.MiniLlmConfig(long_term_coef=0.0))
    optimizer = torch.optim.SGD([logits], lr=10.0)
    before = reverse(logits)
    for _ in range(30):
        logprobs = torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0] * mask
        loss, _ = single_only(logits, logprobs, target, mask, values, ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert reverse(logits) < before / 2, (before, reverse(logits))

    logprobs = torch.zeros(1, 3, requires_grad=True)  # log q of three sampled tokens
    fake_logits = torch.zeros(1, 3, 2)
    liked = torch.tensor([[[0.0, -30.0]] * 3])  # the teacher is sure of token 0 everywhere
    loss, _ = L.minillm(L.MiniLlmConfig())(fake_logits, logprobs, torch.zeros(1, 3, dtype=torch.long),
                                           torch.ones(1, 3), liked, torch.tensor([[[0, 1]] * 3]))
    loss.backward()
    # future reward log p - log q = 0 - 0 for every token: no push; make later tokens unlikely for q
    assert torch.allclose(logprobs.grad, torch.zeros(1, 3))
    q = torch.tensor([[0.0, -2.0, -2.0]], requires_grad=True)
    loss, _ = L.minillm(L.MiniLlmConfig())(fake_logits, q, torch.zeros(1, 3, dtype=torch.long),
                                           torch.ones(1, 3), liked, torch.tensor([[[0, 1]] * 3]))
    loss.backward()
    assert q.grad[0, 0] < 0 and q.grad[0, 1] < 0 and q.grad[0, 2] == 0, q.grad  # descent raises log q(y_0)


def test_teacher_label_logprobs_inside_and_outside_top_k():
    _, teacher_logits, labels, values, ids = _inputs(seed=9, k=4)
    logp = torch.log_softmax(teacher_logits, -1)
    got = L.teacher_label_logprobs(values, ids, labels.clamp(min=0), V)
    exact = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    inside = (ids == labels.clamp(min=0)[..., None]).any(-1)
    assert torch.allclose(got[inside], exact[inside])
    rest = 1 - values.exp().sum(-1)
    assert torch.allclose(got[~inside], torch.log(rest / (V - 4))[~inside], atol=1e-5)


@pytest.mark.parametrize("name", ["reverse_kl", "jsd"])
def test_every_loss_reports_the_teacher_student_kl(name):
    """Whatever the loss minimizes, its ``kl`` metric is KL(teacher || student), token mean."""
    student_logits, teacher_logits, labels, values, ids = _inputs(seed=10)
    logprobs, mask = _engine_inputs(student_logits, labels)
    config = L.JsdLossConfig() if name == "jsd" else L.DistillLossConfig()
    _, metrics = getattr(L, name)(config)(student_logits, logprobs, mask, values, ids)
    expected = _naive_loss(student_logits.double(), teacher_logits.double(), labels, V, "forward_kl", 0.5, 1.0, 0.0,
                           "token_mean")
    assert metrics["kl"].item() == pytest.approx(expected, rel=1e-4)
