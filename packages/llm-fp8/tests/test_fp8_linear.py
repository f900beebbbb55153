"""FP8 scaling and the FP8 linear layer against an independent float64 reference.

The reference quantizes with explicit loops over tiles (scale = amax / 448 or / 57344 in fp32,
the value divided by it, saturated, cast by torch), then multiplies the dequantized operands in
float64. The layer must produce the same FP8 codes and, to fp32 accumulation error, the same
outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from llm_fp8.fp8_linear import Fp8Linear
from llm_fp8.matmul import scaled_matmul
from llm_fp8.recipes import Fp8Config, Fp8TensorwiseConfig
from llm_fp8.scaling import AmaxHistory, amax, quantize_fp8

DTYPES = {"e4m3": (torch.float8_e4m3fn, 448.0), "e5m2": (torch.float8_e5m2, 57344.0)}
SHAPES = {"tensor": None, "tile": (1, 128), "block": (128, 128)}


def naive_quantize(x: torch.Tensor, fmt: str, granularity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(FP8 values as fp32, per-element fp32 scale), one tile at a time."""
    dtype, largest = DTYPES[fmt]
    rows, cols = x.shape
    tile_rows, tile_cols = SHAPES[granularity] or (rows, cols)
    values, scales = torch.empty_like(x), torch.empty_like(x)
    for i in range(0, rows, tile_rows):
        for j in range(0, cols, tile_cols):
            block = x[i:i + tile_rows, j:j + tile_cols]
            scale = block.abs().max().clamp(min=1e-12) / largest
            values[i:i + tile_rows, j:j + tile_cols] = (block / scale).clamp(-largest, largest).to(dtype).float()
            scales[i:i + tile_rows, j:j + tile_cols] = scale
    return values, scales


def reference_product(a, a_spec, b, b_spec) -> torch.Tensor:
    """float64 ``Q(a) @ Q(b).T`` with each operand quantized along its last dimension."""
    (qa, sa), (qb, sb) = naive_quantize(a, *a_spec), naive_quantize(b, *b_spec)
    return (qa.double() * sa.double()) @ (qb.double() * sb.double()).T


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to fp32 accumulation: 1e-5 of the largest magnitude."""
    return float((actual.double() - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


@pytest.mark.parametrize("granularity", ["tensor", "row", "tile", "block"])
def test_quantize_codes_equal_the_naive_loop(granularity):
    x = torch.randn(200, 300, generator=torch.Generator().manual_seed(0)) * 3
    q = quantize_fp8(x, "e4m3", granularity)
    if granularity == "row":
        expected = torch.cat([naive_quantize(x[i:i + 1], "e4m3", "tensor")[0] for i in range(200)])
    else:
        expected = naive_quantize(x, "e4m3", granularity)[0]
    assert torch.equal(q.data.float(), expected)  # 300 columns: the last tile is 44 wide
    assert q.scale.shape == {"tensor": (), "row": (200, 1), "tile": (200, 3), "block": (2, 3)}[granularity]
    relative = (q.dequantize() - x).abs() / x.abs().clamp(min=1e-3)
    assert float(relative[x.abs() > 0.5].max()) <= 2 ** -4  # E4M3: 3 mantissa bits, half an ulp


def test_saturation_and_special_values():
    x = torch.tensor([[1.0, -2.0, float("inf"), float("-inf"), float("nan"), 0.5]])
    q = quantize_fp8(x, "e4m3", "tensor")
    # infinities and NaN do not set the scale: the finite amax (2) maps onto 448
    assert float(q.scale) == pytest.approx(2.0 / 448)
    values = q.data.float()
    assert values[0, 2] == 448 and values[0, 3] == -448 and torch.isnan(values[0, 4])
    # a delayed amax below the current one: what exceeds the range saturates, in E5M2 too (not inf)
    small = torch.tensor(0.5)
    for fmt, largest in (("e4m3", 448.0), ("e5m2", 57344.0)):
        saturated = quantize_fp8(x[:, :2], fmt, "tensor", amax_value=small).data.float()
        assert saturated.tolist() == [[largest, -largest]]
    zeros = quantize_fp8(torch.zeros(3, 4), "e4m3", "tile")
    assert torch.equal(zeros.dequantize(), torch.zeros(3, 4)) and bool(torch.isfinite(zeros.scale).all())


def test_power_of_two_scales_dequantize_exactly_representable_values():
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    q = quantize_fp8(x, "e4m3", "tile", power_of_two=True)
    assert torch.equal(torch.log2(q.scale), torch.log2(q.scale).round())
    assert float(q.data.float().abs().max()) <= 448
    again = quantize_fp8(q.dequantize(), "e4m3", "tile", power_of_two=True)
    assert torch.equal(again.dequantize(), q.dequantize())


def test_delayed_scaling_uses_the_history_max():
    history = AmaxHistory(length=2)
    assert float(history.amax_for(torch.full((2, 2), 3.0))) == 3.0  # no history: the current amax
    assert float(history.amax_for(torch.full((2, 2), 1.0))) == 3.0
    assert float(history.amax_for(torch.full((2, 2), 1.0))) == 3.0
    assert float(history.amax_for(torch.full((2, 2), 1.0))) == 1.0  # the 3 has left the window
    with pytest.raises(ValueError, match="delayed scaling"):
        Fp8Config(scaling="delayed")


@pytest.mark.parametrize("a_gran,b_gran", [("tile", "block"), ("tensor", "tensor"), ("tile", "tile")])
def test_scaled_matmul_equals_float64(a_gran, b_gran):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(96, 320, generator=g), torch.randn(140, 320, generator=g)
    out = scaled_matmul(quantize_fp8(a, "e4m3", a_gran), quantize_fp8(b, "e4m3", b_gran))
    assert close(out, reference_product(a, ("e4m3", a_gran), b, ("e4m3", b_gran)))


@pytest.mark.parametrize("config", [Fp8Config(), Fp8TensorwiseConfig(), Fp8Config(grad_format="e4m3")],
                         ids=["deepseek", "tensorwise", "deepseek-e4m3-grads"])
def test_fp8_linear_forward_and_gradients_equal_float64(config):
    g = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(200, 150, bias=False)
    layer = Fp8Linear(linear, config)
    x = torch.randn(2, 130, 200, generator=g, requires_grad=True)
    upstream = torch.randn(2, 130, 150, generator=g)
    y = layer(x)
    y.backward(upstream)
    rows, w, dy = x.detach().reshape(-1, 200), linear.weight.detach(), upstream.reshape(-1, 150)
    fwd, grad = (config.format, config.input_scaling), (config.grad_format, config.grad_scaling)
    weight = (config.format, config.weight_scaling)
    assert close(y.detach().reshape(-1, 150), reference_product(rows, fwd, w, weight))
    assert close(x.grad.reshape(-1, 200), reference_product(dy, grad, w.t().contiguous(), weight))
    assert close(linear.weight.grad, reference_product(dy.t().contiguous(), grad, rows.t().contiguous(), fwd))
    assert layer.weight is linear.weight and linear.weight.dtype == torch.float32  # fp32 master weight


def test_fp8_linear_under_bf16_autocast_keeps_its_fp8_arithmetic():
    linear = torch.nn.Linear(128, 64, bias=True)
    layer = Fp8Linear(linear, Fp8Config())
    x = torch.randn(8, 128)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = layer(x)
    assert torch.equal(inside.float(), expected)  # fp32 input: the same FP8 products, not bf16 ones


def test_online_amax_ignores_non_finite_values():
    x = torch.tensor([[1.0, float("nan")], [float("inf"), -3.0]])
    assert float(amax(x, "tensor")) == 3.0
    assert amax(x, "row").flatten().tolist() == [1.0, 3.0]


def test_kernel_scales_have_the_layouts_cublas_reads():
    from llm_fp8.matmul import _kernel_scale, kernel_shapes_ok

    x, w = torch.randn(256, 640), torch.randn(384, 640)
    tile = _kernel_scale(quantize_fp8(x, "e4m3", "tile"), "a")
    assert tile.shape == (256, 5) and tile.stride() == (1, 256)  # (M, K / 128), outer-dimension major
    block = _kernel_scale(quantize_fp8(w, "e4m3", "block"), "b")
    assert block.shape == (8, 3) and block.stride() == (1, 8)  # (K / 128 padded to 4, N / 128), K-major
    assert not kernel_shapes_ok(quantize_fp8(x, "e4m3", "tile"), quantize_fp8(w, "e4m3", "block"))  # CPU
