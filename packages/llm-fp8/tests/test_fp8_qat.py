"""Integer QAT / PTQ: the quantizer's grid, the straight-through estimator, the export format."""

from __future__ import annotations

import pytest
import torch

from llm_fp8.qat import (
    FakeQuantLinear,
    dequantize_int,
    fake_quantize_int,
    load_quantized,
    pack_int4,
    quantize_int,
    quantize_state,
    save_quantized,
    unpack_int4,
)
from llm_fp8.recipes import IntScheme, ModuleFilter, QatConfig


@pytest.mark.parametrize("bits,group_size", [(4, 32), (4, None), (8, 16), (8, None)])
def test_codes_and_scales_follow_the_symmetric_formula(bits, group_size):
    w = torch.randn(24, 64, generator=torch.Generator().manual_seed(0))
    codes, scales = quantize_int(w, bits, group_size)
    qmax = 2 ** (bits - 1) - 1
    size = group_size or 64
    assert scales.shape == (24, 64 // size)
    assert int(codes.abs().max()) == qmax  # each group's amax maps onto +-qmax
    for row in range(3):  # independent check, one group at a time
        for g in range(64 // size):
            group = w[row, g * size:(g + 1) * size]
            scale = group.abs().max() / qmax
            assert torch.equal(codes[row, g * size:(g + 1) * size], torch.round(group / scale).to(torch.int8))
    assert torch.equal(dequantize_int(codes, scales), fake_quantize_int(w, bits, group_size))
    with pytest.raises(ValueError, match="group_size"):
        quantize_int(w, bits, 48)


def test_int4_packing_round_trips_every_code():
    codes = torch.arange(-8, 8, dtype=torch.int8).repeat(3, 2)
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 16)
    assert int(packed[0, 0]) == (0x8 | (0x9 << 4))  # -8 -> 0b1000 low nibble, -7 -> 0b1001 high nibble
    assert torch.equal(unpack_int4(packed), codes)


def test_fake_quant_linear_forward_is_quantized_and_its_gradient_goes_straight_through():
    g = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(64, 32, bias=False)
    layer = FakeQuantLinear(linear, QatConfig(weights=IntScheme(bits=4, group_size=32)))
    x = torch.randn(5, 64, generator=g, requires_grad=True)
    upstream = torch.randn(5, 32, generator=g)
    out = layer(x)
    quantized = fake_quantize_int(linear.weight.detach(), 4, 32)
    assert torch.equal(out, torch.nn.functional.linear(x.detach(), quantized))
    out.backward(upstream)
    assert torch.allclose(linear.weight.grad, upstream.T @ x.detach(), atol=1e-6)  # STE: identity
    assert torch.allclose(x.grad, upstream @ quantized, atol=1e-6)


def test_int8_activations_are_quantized_per_token():
    linear = torch.nn.Linear(16, 4, bias=False)
    layer = FakeQuantLinear(linear, QatConfig(weights=IntScheme(bits=8, group_size=None), activations="int8"))
    x = torch.randn(3, 16)
    x_q = fake_quantize_int(x, 8, None)
    expected = torch.nn.functional.linear(x_q, fake_quantize_int(linear.weight.detach(), 8, None))
    assert torch.equal(layer(x), expected)


@pytest.mark.parametrize("bits", [4, 8])
def test_export_decodes_to_exactly_the_weights_qat_trains_against(tmp_path, bits):
    g = torch.Generator().manual_seed(2)
    embed = torch.randn(50, 64, generator=g)
    state = {"model.embed_tokens.weight": embed, "lm_head.weight": embed,  # tied: one storage
             "model.layers.0.mlp.up_proj.weight": torch.randn(96, 64, generator=g),
             "model.layers.0.input_layernorm.weight": torch.ones(64)}
    scheme = IntScheme(bits=bits, group_size=32)
    exported, dequantized = quantize_state(state, scheme, ModuleFilter().selects)
    assert set(n for n in exported if n.endswith(".codes")) == {"model.layers.0.mlp.up_proj.weight.codes"}
    assert "lm_head.weight" not in exported  # written once, under the first name
    uri = str(tmp_path / "quantized.safetensors")
    save_quantized(uri, exported, scheme)
    loaded = load_quantized(uri)
    expected = fake_quantize_int(state["model.layers.0.mlp.up_proj.weight"], bits, 32)
    assert torch.equal(loaded["model.layers.0.mlp.up_proj.weight"], expected)
    assert torch.equal(dequantized["model.layers.0.mlp.up_proj.weight"], expected)
    assert torch.equal(loaded["model.embed_tokens.weight"], embed)  # excluded: kept as it is
    size = (tmp_path / "quantized.safetensors").stat().st_size
    assert size < 4 * (embed.numel() + 64) + 96 * 64 * bits / 8 + 4 * 96 * 2 + 2048
