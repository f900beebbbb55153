"""Core's ``cross_entropy`` loss: the mean NLL over scored tokens, equal to ``F.cross_entropy`` on the logits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llm_core.builtins.losses import CrossEntropyConfig, cross_entropy, make_cross_entropy  # noqa: E402


def label_logprobs(logits, labels):
    picked = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return picked.masked_fill(labels == -100, 0.0)


def test_cross_entropy_from_logprobs_equals_the_logits_form():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g)
    labels = torch.randint(0, 11, (3, 6), generator=g)
    labels[0, :4] = -100  # a masked prompt
    mask = (labels != -100).float()
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    got = cross_entropy(logprobs=label_logprobs(logits, labels), mask=mask)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_a_micro_batch_without_scored_tokens_has_zero_loss():
    logprobs = torch.zeros(2, 4)
    assert float(cross_entropy(logprobs=logprobs, mask=torch.zeros(2, 4))) == 0.0


def test_label_smoothing_takes_the_logits():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=g)
    labels = torch.randint(0, 7, (2, 5), generator=g)
    smoothed = make_cross_entropy(CrossEntropyConfig(label_smoothing=0.1))
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1), label_smoothing=0.1)
    assert float(smoothed(logits=logits, labels=labels)) == pytest.approx(float(want), rel=1e-6)
    assert make_cross_entropy(CrossEntropyConfig()) is cross_entropy
