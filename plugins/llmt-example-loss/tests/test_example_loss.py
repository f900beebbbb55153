"""The z-loss plugin, loaded the way users get it: through its installed entry point."""

from __future__ import annotations

import math

import pytest

from llm_core.plugins import PluginHost

torch = pytest.importorskip("torch")


def test_loaded_through_the_entry_point():
    host = PluginHost.discover()
    entry = host.registries.losses.get("z_loss")
    assert entry.plugin == "example-loss"
    assert "log(Z)" in entry.summary


def test_matches_a_naive_reference():
    host = PluginHost.discover()
    loss_fn = host.registries.losses.build("z_loss", {"z_coef": 0.01})
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen)
    labels = torch.randint(0, 7, (2, 5), generator=gen)
    labels[0, :2] = -100  # masked prompt tokens
    total, count, z_total = 0.0, 0, 0.0
    for b in range(2):
        for t in range(5):
            if labels[b, t] == -100:
                continue
            row = [float(x) for x in logits[b, t]]
            log_z = math.log(sum(math.exp(x) for x in row))
            total += log_z - row[int(labels[b, t])]
            z_total += log_z**2
            count += 1
    expected = total / count + 0.01 * z_total / count
    assert float(loss_fn(logits, labels)) == pytest.approx(expected, rel=1e-5)


def test_zero_coefficient_is_plain_cross_entropy():
    host = PluginHost.discover()
    logits = torch.randn(3, 4, 11)
    labels = torch.randint(0, 11, (3, 4))
    z = host.registries.losses.build("z_loss", {"z_coef": 0.0})(logits, labels)
    # the built-in loss takes the labels' log-probs (what an engine hands it), not the logits
    logprobs = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    ce = host.registries.losses.build("cross_entropy")(logprobs=logprobs, mask=torch.ones_like(logprobs))
    assert torch.allclose(z, ce)
