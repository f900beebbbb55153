"""The hand-written RMSNorm and rotation (``llm_torch.fused``) equal the plain tensor code, values and gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llm_torch.fused import rms_norm, rotate  # noqa: E402


def plain_rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def plain_rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos[:, None] + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin[:, None]


def gradients(fn, *inputs, upstream):
    inputs = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    out = fn(*inputs)
    out.backward(upstream)
    return out.detach(), [t.grad for t in inputs if t.requires_grad]


def test_rms_norm_matches_the_plain_code_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(16, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 5, 16, generator=g, dtype=torch.float64)
    # float64 through the plain path (the fused one is fp32 only) against fp32 through the fused one
    want, want_grads = gradients(lambda a, w: plain_rms_norm(a, w, 1e-5), x, weight, upstream=upstream)
    got, got_grads = gradients(lambda a, w: rms_norm(a, w, 1e-5), x.float(), weight.float(), upstream=upstream.float())
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)
    assert torch.autograd.gradcheck(lambda a, w: plain_rms_norm(a, w, 1e-5), (x, weight))  # the reference itself


def test_rotation_matches_the_plain_code_in_value_and_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 8, generator=g, requires_grad=True)
    angles = torch.randn(2, 7, 8, generator=g)
    cos, sin = angles.cos(), angles.sin()
    upstream = torch.randn(2, 3, 7, 8, generator=g)
    want, (want_grad,) = gradients(lambda a: plain_rotate(a, cos, sin), x, upstream=upstream)
    got, (got_grad,) = gradients(lambda a: rotate(a, cos, sin), x, upstream=upstream)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-6, rtol=1e-6)


def test_other_dtypes_take_the_plain_path():
    x = torch.randn(2, 4, 8).bfloat16()
    weight = torch.ones(8)
    assert rms_norm(x, weight, 1e-5).dtype == torch.float32  # fp32 weight times the bf16-cast normalised x
    angles = torch.randn(2, 4, 8)
    assert rotate(x[:, None], angles.cos(), angles.sin()).dtype == torch.bfloat16
