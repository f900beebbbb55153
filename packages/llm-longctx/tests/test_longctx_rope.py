"""Every RoPE scaling equals transformers' ``ROPE_INIT_FUNCTIONS`` for the same parameters: inverse
frequencies and attention factor within 1e-6, over head sizes, bases, factors and options."""

from __future__ import annotations

import math

import pytest
import torch

from llm_core.plugins import get_registries

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

SHAPES = [(64, 10000.0, 256), (128, 500000.0, 8192), (32, 5000.0, 128)]  # head_dim, theta, max positions


def theirs(rope_parameters: dict, head_dim: int, theta: float, max_positions: int, seq_len: int | None = None):
    """transformers' inverse frequencies and attention factor for a Llama config with these parameters."""
    config = transformers.LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                                      max_position_embeddings=max_positions,
                                      rope_parameters={"rope_theta": theta, **rope_parameters})
    kind = rope_parameters["rope_type"]
    if kind == "default":
        return transformers.models.llama.modeling_llama.LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    return ROPE_INIT_FUNCTIONS[kind](config, "cpu", seq_len=seq_len)


def ours(name: str, options: dict, head_dim: int, theta: float, max_positions: int, seq_len: int | None = None):
    scaling = get_registries().context_extensions.build(name, options)
    return scaling.inv_freq(head_dim, theta, max_positions, seq_len or max_positions)


def assert_same(mine, reference):
    (inv_a, factor_a), (inv_b, factor_b) = mine, reference
    assert inv_a.shape == inv_b.shape
    assert (inv_a - inv_b.double()).abs().max().item() <= 1e-6
    assert abs(factor_a - factor_b) <= 1e-6


@pytest.mark.parametrize("head_dim, theta, max_positions", SHAPES)
@pytest.mark.parametrize("factor", [2.0, 8.0, 32.0])
def test_linear_equals_transformers(head_dim, theta, max_positions, factor):
    assert_same(ours("linear", {"factor": factor}, head_dim, theta, max_positions),
                theirs({"rope_type": "linear", "factor": factor}, head_dim, theta, max_positions))


@pytest.mark.parametrize("head_dim, theta, max_positions", SHAPES)
@pytest.mark.parametrize("factor", [2.0, 8.0])
@pytest.mark.parametrize("growth", [0.5, 1.0, 3.0, 8.0])
def test_dynamic_equals_transformers_at_every_length(head_dim, theta, max_positions, factor, growth):
    seq_len = int(max_positions * growth)
    mine = ours("dynamic", {"factor": factor}, head_dim, theta, max_positions, seq_len)
    assert_same(mine, theirs({"rope_type": "dynamic", "factor": factor}, head_dim, theta, max_positions, seq_len))
    if growth <= 1:  # no change up to the trained length
        assert_same(mine, theirs({"rope_type": "default"}, head_dim, theta, max_positions))


@pytest.mark.parametrize("head_dim, theta, max_positions", SHAPES)
@pytest.mark.parametrize("factor", [2.0, 8.0, 16.0])
def test_ntk_is_transformers_default_rope_on_the_grown_base(head_dim, theta, max_positions, factor):
    """Static NTK is not a transformers rope_type; it equals (1) plain RoPE on the base
    theta * s ** (d / (d - 2)), how it is exported, and (2) dynamic NTK with factor 1 at s times
    the trained length."""
    mine = ours("ntk", {"factor": factor}, head_dim, theta, max_positions)
    grown = theta * factor ** (head_dim / (head_dim - 2))
    assert_same(mine, theirs({"rope_type": "default"}, head_dim, grown, max_positions))
    assert_same(mine, theirs({"rope_type": "dynamic", "factor": 1.0}, head_dim, theta, max_positions,
                             int(factor * max_positions)))
    exported = get_registries().context_extensions.build("ntk", {"factor": factor}).rope_parameters(theta, head_dim)
    assert exported == {"rope_type": "default", "rope_theta": pytest.approx(grown)}


YARN_OPTIONS = [
    {},
    {"beta_fast": 16.0, "beta_slow": 2.0},
    {"truncate": False},
    {"attention_factor": 1.25},
    {"mscale": 1.0, "mscale_all_dim": 0.5},
]


@pytest.mark.parametrize("head_dim, theta, max_positions", SHAPES)
@pytest.mark.parametrize("factor", [4.0, 8.0, 32.0])
@pytest.mark.parametrize("extra", YARN_OPTIONS)
def test_yarn_equals_transformers(head_dim, theta, max_positions, factor, extra):
    options = {"factor": factor, "original_max_position_embeddings": max_positions, **extra}
    mine = ours("yarn", options, head_dim, theta, int(max_positions * factor))
    assert_same(mine, theirs({"rope_type": "yarn", **options}, head_dim, theta, int(max_positions * factor)))
    if not extra:  # the paper's temperature: sqrt(1/t) = 0.1 ln s + 1, on cos and sin
        assert mine[1] == pytest.approx(0.1 * math.log(factor) + 1)


def test_yarn_ramp_keeps_fast_pairs_and_interpolates_slow_ones():
    inv, _ = ours("yarn", {"factor": 8.0, "original_max_position_embeddings": 256}, 64, 10000.0, 2048)
    plain = 1.0 / 10000.0 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    turns = 256 * plain / (2 * math.pi)  # how many times each pair turns over the trained length
    assert torch.allclose(inv[turns > 32], plain[turns > 32])
    assert torch.allclose(inv[turns < 1], plain[turns < 1] / 8)


@pytest.mark.parametrize("head_dim, theta, max_positions", SHAPES)
@pytest.mark.parametrize("factor, low, high", [(8.0, 1.0, 4.0), (4.0, 2.0, 8.0), (32.0, 1.0, 2.0)])
def test_llama3_equals_transformers(head_dim, theta, max_positions, factor, low, high):
    options = {"factor": factor, "original_max_position_embeddings": max_positions, "low_freq_factor": low,
               "high_freq_factor": high}
    assert_same(ours("llama3", options, head_dim, theta, max_positions * 4),
                theirs({"rope_type": "llama3", **options}, head_dim, theta, max_positions * 4))


def test_bad_options_are_clear_errors():
    from pydantic import ValidationError

    extensions = get_registries().context_extensions
    with pytest.raises(ValidationError, match="factor"):
        extensions.build("linear", {"factor": 0.5})
    with pytest.raises(ValidationError, match="beta_fast"):
        extensions.build("yarn", {"factor": 4, "original_max_position_embeddings": 64, "beta_fast": 0.5})
    with pytest.raises(ValidationError, match="partial_rotary_factor"):
        extensions.build("llama3", {"factor": 8, "original_max_position_embeddings": 64, "partial_rotary_factor": 0.5})
