"""The oneDNN linear layer: same parameters as nn.Linear, same products and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_torch.linear import Linear, onednn_available
from llm_torch.model import LlamaModel, ModelConfig


@pytest.mark.parametrize("shape", [(5, 48), (3, 7, 48)])
def test_linear_matches_f_linear_forward_and_backward(shape):
    torch.manual_seed(0)
    layer = Linear(48, 80, bias=False)
    x = torch.randn(*shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    weight_ref = layer.weight.detach().clone().requires_grad_(True)
    upstream = torch.randn(*shape[:-1], 80)
    out = layer(x)
    assert out.grad_fn is not None
    if onednn_available():
        assert type(out.grad_fn).__name__ == "_OneDNNLinearBackward"  # the fast path ran
    (out * upstream).sum().backward()
    (F.linear(x_ref, weight_ref) * upstream).sum().backward()
    assert torch.allclose(out, F.linear(x_ref, weight_ref), rtol=1e-5, atol=1e-6)
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer.weight.grad, weight_ref.grad, rtol=1e-5, atol=1e-6)


def test_linear_falls_back_under_autocast_and_keeps_parameter_names():
    layer = Linear(16, 8, bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, 16)).dtype == torch.bfloat16  # autocast's rules, not oneDNN's fp32
    model = LlamaModel(ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1,
                                   num_heads=2, num_kv_heads=1))
    names = set(model.state_dict())
    assert "model.layers.0.self_attn.q_proj.weight" in names and "lm_head.weight" in names
    assert isinstance(model.lm_head, torch.nn.Linear)
