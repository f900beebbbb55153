"""MX formats (OCP Microscaling v1.0): the shared scale, special values, and MX training layers."""

from __future__ import annotations

import pytest
import torch

from llm_fp8.formats import FORMATS
from llm_fp8.mx import MxLinear, MxWeightLinear, mx_round, quantize_mx
from llm_fp8.recipes import MxConfig, MxWeightsConfig

ELEMENTS = sorted(FORMATS)


@pytest.mark.parametrize("element", ELEMENTS)
def test_every_element_value_round_trips_at_every_scale(element):
    fmt = FORMATS[element]
    finite = fmt.table[torch.isfinite(fmt.table)]
    blocks = finite.repeat(-(-256 // finite.numel()))[:256].reshape(8, 32)  # every value, both signs
    blocks[:, 0] = fmt.max  # pins each block's amax, so its scale is 2**exponent
    for exponent in (-100, -3, 0, 7, 100):
        q = quantize_mx(blocks * 2.0 ** exponent, element)
        assert torch.equal(q.scales.flatten().long() - 127, torch.full((8,), exponent)), (element, exponent)
        assert torch.equal(q.dequantize(), blocks * 2.0 ** exponent), (element, exponent)


def test_shared_scale_is_the_specs_formula():
    # X = 2**(floor(log2(amax)) - emax_elem): amax 5.0 -> floor(log2) = 2; E2M1's emax is 2 -> X = 1
    block = torch.zeros(1, 32)
    block[0, 0] = 5.0
    block[0, 1] = 0.3
    q = quantize_mx(block, "e2m1")
    assert int(q.scales) == 127
    assert q.dequantize()[0, :2].tolist() == [4.0, 0.5]  # 5 -> 4 (tie to even), 0.3 -> 0.5
    q8 = quantize_mx(block * 1000, "e4m3")  # floor(log2(5000)) = 12, emax 8 -> X = 16
    assert int(q8.scales) == 127 + 4
    saturated = quantize_mx(torch.tensor([[7.9] + [0.0] * 31]), "e2m1")  # amax 7.9: X = 1, 7.9 -> 6
    assert float(saturated.dequantize()[0, 0]) == 6.0


def test_non_finite_values_poison_their_block_only():
    x = torch.ones(2, 64)
    x[0, 3] = float("nan")
    x[1, 40] = float("inf")
    q = quantize_mx(x, "e4m3")
    assert q.scales.tolist() == [[255, 127 - 8], [127 - 8, 255]]
    out = q.dequantize()
    assert torch.isnan(out[0, :32]).all() and torch.isnan(out[1, 32:]).all()
    assert torch.equal(out[0, 32:], torch.ones(32)) and torch.equal(out[1, :32], torch.ones(32))
    zeros = quantize_mx(torch.zeros(1, 32), "e2m1")
    assert int(zeros.scales) == 0 and torch.equal(zeros.dequantize(), torch.zeros(1, 32))


def test_mx_round_pads_a_short_last_block():
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(0))
    padded = torch.cat([x, torch.zeros(3, 24)], dim=1)
    assert torch.equal(mx_round(x, "e3m2"), quantize_mx(padded, "e3m2").dequantize()[:, :40])


def test_mxfp8_linear_products_equal_float64_of_the_mx_operands():
    g = torch.Generator().manual_seed(4)
    linear = torch.nn.Linear(64, 96, bias=False)
    layer = MxLinear(linear, MxConfig())
    x = torch.randn(40, 64, generator=g, requires_grad=True)
    upstream = torch.randn(40, 96, generator=g)
    layer(x).backward(upstream)
    w = linear.weight.detach()

    def along_rows(t):  # MX blocks of 32 along dimension 0 (tokens / output features)
        return mx_round(t.t().contiguous(), "e4m3").t().double()

    forward = mx_round(x.detach(), "e4m3").double() @ mx_round(w, "e4m3").double().T
    assert torch.allclose(layer(x.detach()).double(), forward, rtol=0, atol=1e-5)
    assert torch.allclose(x.grad.double(), mx_round(upstream, "e4m3").double() @ along_rows(w), atol=1e-5)
    assert torch.allclose(linear.weight.grad.double(), along_rows(upstream).T @ along_rows(x.detach()), atol=1e-4)


def test_mx_weight_linear_uses_mx_weights_and_a_straight_through_gradient():
    g = torch.Generator().manual_seed(5)
    linear = torch.nn.Linear(64, 32, bias=False)
    layer = MxWeightLinear(linear, MxWeightsConfig(weight="e2m1"))
    x = torch.randn(10, 64, generator=g)
    upstream = torch.randn(10, 32, generator=g)
    out = layer(x)
    quantized = mx_round(linear.weight.detach(), "e2m1")
    assert torch.equal(out, torch.nn.functional.linear(x, quantized))
    out.backward(upstream)
    assert torch.allclose(linear.weight.grad, upstream.T @ x, atol=1e-5)  # d(quantized)/dw taken as 1
