"""Bit exactness of every element format: tables, round trips, rounding and saturation against
torch's native FP8 dtypes and the OCP specifications' values (torchao: test_fp8_torchao.py)."""

from __future__ import annotations

import pytest
import torch

from llm_fp8.formats import E2M1, E2M3, E3M2, E4M3, E5M2, FORMATS, e8m0_decode, e8m0_encode

NATIVE = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def every_code(fmt) -> torch.Tensor:
    return torch.arange(1 << fmt.bits, dtype=torch.uint8)


def probe_values(fmt, seed: int = 0) -> torch.Tensor:
    """Every value, every midpoint between neighbours and the floats just around each midpoint,
    random values across the range, overflow, infinities, NaN, signed zeros; both signs."""
    finite = fmt.table[torch.isfinite(fmt.table)].unique()
    midpoints = (finite[1:] + finite[:-1]) / 2
    up, down = torch.tensor(float("inf")), torch.tensor(float("-inf"))
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([finite, midpoints, torch.nextafter(midpoints, up), torch.nextafter(midpoints, down),
                   torch.randn(20000, generator=g) * fmt.max / 3,
                   torch.randn(20000, generator=g) * fmt.min_normal,
                   torch.tensor([fmt.max * 1.01, fmt.max * 8, 1e30, 3e38, 1e-40, 0.0, float("inf")])])
    return torch.cat([x, -x])


@pytest.mark.parametrize("name", ["e4m3", "e5m2"])
def test_fp8_tables_equal_torch_dtypes(name):
    fmt = FORMATS[name]
    native = every_code(fmt).view(NATIVE[name]).float()
    assert torch.equal(torch.isnan(native), torch.isnan(fmt.table))
    keep = ~torch.isnan(native)
    assert torch.equal(native[keep], fmt.table[keep])


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_code_round_trips(name):
    fmt = FORMATS[name]
    codes = every_code(fmt)
    values = fmt.decode(codes)
    nan = torch.isnan(values)
    assert torch.equal(fmt.encode(values[~nan], saturate=False), codes[~nan])
    if fmt.nan_code is not None:  # every NaN code encodes back to the canonical NaN, with its sign
        sign = torch.signbit(values[nan]).to(torch.uint8) << (fmt.bits - 1)
        assert torch.equal(fmt.encode(values[nan]), fmt.nan_code | sign)


def test_e4m3_rounding_and_saturation_equal_torch_cast():
    x = probe_values(E4M3)
    x = torch.cat([x, torch.tensor([float("nan"), -float("nan")])])
    assert torch.equal(E4M3.encode(x, saturate=True), x.to(torch.float8_e4m3fn).view(torch.uint8))


def test_e5m2_rounding_equals_torch_cast_and_saturates_when_asked():
    x = torch.cat([probe_values(E5M2), torch.tensor([float("nan"), 61440.0, 61439.0])])
    # torch's E5M2 cast overflows to infinity (61440, the midpoint past the largest value, rounds to it)
    assert torch.equal(E5M2.encode(x, saturate=False), x.to(torch.float8_e5m2).view(torch.uint8))
    clamped = x.clamp(-E5M2.max, E5M2.max)
    assert torch.equal(E5M2.encode(x, saturate=True), clamped.to(torch.float8_e5m2).view(torch.uint8))


def test_small_formats_match_the_ocp_tables():
    # OCP Microscaling v1.0, section 5.3.3: the FP4 values; the FP6 / FP8 extremes of table 2 and OFP8.
    assert E2M1.table[:8].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert torch.equal(E2M1.table[8:], -E2M1.table[:8])
    expected = {  # max normal, min normal, min subnormal, max exponent (emax_elem)
        E2M3: (7.5, 1.0, 0.125, 2), E3M2: (28.0, 0.25, 0.0625, 4), E2M1: (6.0, 1.0, 0.5, 2),
        E4M3: (448.0, 2.0 ** -6, 2.0 ** -9, 8), E5M2: (57344.0, 2.0 ** -14, 2.0 ** -16, 15),
    }
    for fmt, (largest, normal, subnormal, emax) in expected.items():
        assert (fmt.max, fmt.min_normal, fmt.min_subnormal, fmt.max_exponent) == (largest, normal, subnormal, emax)
        finite = fmt.table[torch.isfinite(fmt.table)]
        assert float(finite.max()) == largest and float(finite[finite > 0].min()) == subnormal
    assert not torch.isnan(E2M3.table).any() and not torch.isinf(E3M2.table).any()  # FP6 / FP4: all numbers


def test_small_formats_refuse_nan():
    with pytest.raises(ValueError, match="no NaN"):
        E2M1.encode(torch.tensor([1.0, float("nan")]))


def test_e8m0_matches_torch():
    codes = torch.arange(256, dtype=torch.uint8)
    native = codes.view(torch.float8_e8m0fnu).float()
    ours = e8m0_decode(codes)
    assert torch.equal(torch.isnan(native), torch.isnan(ours)) and bool(torch.isnan(ours[255]))
    assert torch.equal(native[:255], ours[:255])
    exponents = torch.arange(-127, 128)
    assert torch.equal(e8m0_encode(exponents), torch.pow(2.0, exponents.double()).float()
                       .to(torch.float8_e8m0fnu).view(torch.uint8))
    assert int(e8m0_encode(torch.tensor([128]))) == 0xFF  # beyond the range: NaN
