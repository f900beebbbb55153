"""HF <-> nanotron weights: the rotary layout change keeps attention exact, and round trips are identity."""

from __future__ import annotations

import torch

from llm_nanotron import convert
from llm_nanotron.flash_attn_standin import RotaryEmbedding


def test_interleaving_is_a_permutation_and_its_inverse():
    w = torch.arange(2 * 8 * 3, dtype=torch.float32).view(16, 3)
    moved = convert.to_interleaved(w, head_dim=8)
    assert moved[1].tolist() == w[4].tolist(), "row 1 of a head is old row d/2"
    assert torch.equal(convert.from_interleaved(moved, 8), w)


def test_attention_scores_agree_across_rotary_layouts():
    """q.k after HF's half-split RoPE on HF weights == after interleaved RoPE on converted weights."""
    g = torch.Generator().manual_seed(0)
    head_dim, heads, hidden, length = 8, 2, 12, 7
    wq, wk = torch.randn(heads * head_dim, hidden, generator=g), torch.randn(heads * head_dim, hidden, generator=g)
    x = torch.randn(1, length, hidden, generator=g)

    def scores(wq, wk, interleaved):
        rotary = RotaryEmbedding(head_dim, interleaved=interleaved)
        q = (x @ wq.T).view(1, length, heads, head_dim)
        k = (x @ wk.T).view(1, length, heads, head_dim)
        q, kv = rotary(q, kv=torch.stack((k, k), dim=2))
        return torch.einsum("bqhd,bkhd->bhqk", q, kv[:, :, 0])

    hf = scores(wq, wk, interleaved=False)
    nanotron = scores(convert.to_interleaved(wq, head_dim), convert.to_interleaved(wk, head_dim), interleaved=True)
    assert torch.allclose(hf, nanotron, atol=1e-5)


def test_hf_state_round_trips():
    from llm_torch.model import LlamaModel, ModelConfig

    config = ModelConfig(vocab_size=50, hidden_size=16, intermediate_size=24, num_layers=2, num_heads=4,
                         num_kv_heads=2, tie_embeddings=False)
    state = LlamaModel(config).state_dict()
    nanotron = convert.hf_to_nanotron(state, 2, config.head_dim, tie_embeddings=False)
    assert nanotron[convert.LAYER.format(i=1) + "attn.qkv_proj.weight"].shape == (16 + 2 * 8, 16)
    back = convert.nanotron_to_hf(nanotron, 2, 4, 2, config.head_dim, tie_embeddings=False)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
