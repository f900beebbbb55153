"""The oneDNN linear layer: same parameters as nn.Linear, same products and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_torch.linear import Linear, choose_backend, cpu_features, onednn_available, onednn_isa_limit, onednn_matmul
from llm_torch.model import LlamaModel, ModelConfig


@pytest.mark.parametrize("backend", ["onednn", "blas"])
@pytest.mark.parametrize("shape", [(5, 48), (3, 7, 48)])
def test_linear_matches_f_linear_forward_and_backward(shape, backend, matmul_backend):
    in_effect = matmul_backend(backend)
    torch.manual_seed(0)
    layer = Linear(48, 80, bias=False)
    x = torch.randn(*shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    weight_ref = layer.weight.detach().clone().requires_grad_(True)
    upstream = torch.randn(*shape[:-1], 80)
    out = layer(x)
    assert out.grad_fn is not None
    assert in_effect == ("onednn" if backend == "onednn" and onednn_available() else "blas")
    fast_path = type(out.grad_fn).__name__ == "_OneDNNLinearBackward"
    assert fast_path == (in_effect == "onednn")
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


def test_backend_rule_per_cpu():
    """oneDNN where it measured faster than MKL (AMD with AVX-512), the BLAS elsewhere."""
    assert choose_backend("AuthenticAMD", frozenset({"avx2", "fma", "avx512f"})) == "onednn"
    assert choose_backend("AuthenticAMD", frozenset({"avx2", "fma"})) == "blas"  # Zen 3
    # oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA) loses its edge: the AVX2 CPU's rule
    assert choose_backend("AuthenticAMD", frozenset({"avx2", "fma", "avx512f"}), "AVX2") == "blas"
    assert choose_backend("AuthenticAMD", frozenset({"avx2", "fma", "avx512f"}), "avx512_core") == "onednn"
    assert choose_backend("GenuineIntel", frozenset({"avx2", "fma", "avx512f"})) == "blas"
    assert choose_backend("", frozenset()) == "blas"  # no /proc/cpuinfo
    vendor, flags = cpu_features()  # this machine's, read once
    assert isinstance(vendor, str) and isinstance(flags, frozenset)


def test_onednn_limit_is_read_from_either_variable(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert onednn_isa_limit() == ""
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx2")
    assert onednn_isa_limit() == "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert onednn_isa_limit() == "AVX512_CORE"  # the current name wins


def test_backend_variable_overrides_the_rule_and_is_checked(matmul_backend):
    assert matmul_backend("blas") == "blas"
    rule = choose_backend(*cpu_features(), onednn_isa_limit())
    assert matmul_backend("auto") == (rule if onednn_available() else "blas")
    with pytest.raises(ValueError, match="LLMT_CPU_MATMUL='mkl': use onednn, blas or auto"):
        matmul_backend("mkl")


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear")
def test_onednn_matmul_equals_the_product_for_every_layout():
    """Row-major or transposed operands, in each of the forms the function picks (the output
    layer's backward multiplies a transposed 2048 x 8192 buffer by the hidden states)."""
    torch.manual_seed(0)
    a, b = torch.randn(48, 40), torch.randn(40, 24)
    for left in (a, a.t().contiguous().t()):
        for right in (b, b.t().contiguous().t()):
            torch.testing.assert_close(onednn_matmul(left, right), left @ right, rtol=1e-5, atol=1e-5)
    big, small = torch.randn(64, 200), torch.randn(64, 8)  # dW = big^T small: the smaller one is copied
    torch.testing.assert_close(onednn_matmul(big.t(), small), big.t() @ small, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(onednn_matmul(small.t(), big), small.t() @ big, rtol=1e-5, atol=1e-5)
