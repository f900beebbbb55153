"""Parity with torchao's MX reference code (plain torch): element casts and whole MX tensors, bit for bit.

torchao's import loads torch._dynamo (about 10 s on a quiet 2-core machine), so its checks live here."""

from __future__ import annotations

import pytest
import torch

from llm_fp8.formats import FORMATS
from llm_fp8.mx import quantize_mx

kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
mx_tensor = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
constants = pytest.importorskip("torchao.prototype.mx_formats.constants")

TORCHAO_ELEMENT = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2, "e2m3": constants.DTYPE_FP6_E2M3,
                   "e3m2": constants.DTYPE_FP6_E3M2, "e2m1": torch.float4_e2m1fn_x2}


def probe(fmt) -> torch.Tensor:
    finite = fmt.table[torch.isfinite(fmt.table)].unique()
    midpoints = (finite[1:] + finite[:-1]) / 2
    g = torch.Generator().manual_seed(1)
    x = torch.cat([finite, midpoints, torch.nextafter(midpoints, torch.tensor(1e9)),
                   torch.nextafter(midpoints, torch.tensor(-1e9)), torch.randn(20000, generator=g) * fmt.max,
                   torch.tensor([fmt.max * 1.5, 1e30, 1e-40, 0.0])])
    return torch.cat([x, -x])


@pytest.mark.parametrize("name", ["e2m1", "e2m3", "e3m2"])
def test_element_casts_equal_torchao(name):
    cast = {"e2m1": kernels.f32_to_f4_unpacked, "e2m3": kernels.f32_to_f6_e2m3_unpacked,
            "e3m2": kernels.f32_to_f6_e3m2_unpacked}[name]
    back = {"e2m1": kernels.f4_unpacked_to_f32, "e2m3": kernels.f6_e2m3_unpacked_to_f32,
            "e3m2": kernels.f6_e3m2_unpacked_to_f32}[name]
    fmt = FORMATS[name]
    x = probe(fmt)
    assert torch.equal(fmt.encode(x, saturate=True), cast(x))
    codes = torch.arange(1 << fmt.bits, dtype=torch.uint8)
    assert torch.equal(fmt.decode(codes), back(codes))


@pytest.mark.parametrize("name", sorted(TORCHAO_ELEMENT))
def test_mx_tensors_equal_torchao(name):
    g = torch.Generator().manual_seed(0)
    # blocks over many magnitudes (2**-20 .. 2**20), a zero block, a block with one large outlier
    x = torch.randn(64, 256, generator=g) * torch.exp2(torch.randint(-20, 21, (64, 1), generator=g).float())
    x[0, :32] = 0.0
    x[1, 5] = 1e6
    scales, data = mx_tensor.to_mx(x, TORCHAO_ELEMENT[name], 32)
    ours = quantize_mx(x, name)
    assert torch.equal(ours.scales, scales.view(torch.uint8))
    if name == "e2m1":
        data = kernels.unpack_uint4(data)
    elif name in ("e4m3", "e5m2"):
        data = data.view(torch.uint8)
    assert torch.equal(ours.codes, data)
    decoded = mx_tensor.to_dtype(mx_tensor.to_mx(x, TORCHAO_ELEMENT[name], 32)[1], scales,
                                 TORCHAO_ELEMENT[name], 32, torch.float32)
    assert torch.equal(ours.dequantize(), decoded)
