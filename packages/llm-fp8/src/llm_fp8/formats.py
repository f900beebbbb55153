"""Small floating-point element formats, bit for bit: FP8 (E4M3, E5M2), FP6 (E2M3, E3M2), FP4 (E2M1), E8M0.

One description (``FloatFormat``: exponent bits, mantissa bits, bias, which codes are special)
gives each format's table of values and a vectorized encoder, round-to-nearest-even like IEEE 754.
The FP8 formats are torch's own dtypes (``torch.float8_e4m3fn``, ``torch.float8_e5m2``) and the
tests check that this encoder agrees with torch's casts on every code and every rounding midpoint;
the FP6 / FP4 formats have no torch dtype and are checked against the OCP Microscaling v1.0 tables
and torchao's reference casts. Codes are returned unpacked, one per ``uint8``.

Special values (OCP 8-bit floating point v1.0 and MX v1.0):

- E4M3 (``fn``: finite): no infinities; S.1111.111 is NaN, so the largest value is 448.
- E5M2 (IEEE-like): S.11111.00 is infinity, S.11111.{01,10,11} are NaN; the largest value is 57344.
- E2M3, E3M2, E2M1: every code is a number (no infinities, no NaN); largest 7.5, 28, 6.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch

from llm_fp8.names import ElementName, Fp8Name

__all__ = ["E2M1", "E2M3", "E3M2", "E4M3", "E5M2", "FORMATS", "TORCH_FP8", "ElementName", "FloatFormat", "Fp8Name"]

Specials = Literal["ieee", "fn", "none"]


@dataclass(frozen=True)
class FloatFormat:
    """A sign bit, ``ebits`` exponent bits (bias ``bias``) and ``mbits`` mantissa bits."""

    name: str
    ebits: int
    mbits: int
    bias: int
    specials: Specials  # ieee: top exponent is inf / NaN; fn: only all-ones is NaN; none: all finite

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def max_exponent(self) -> int:
        """Unbiased exponent of the largest finite value (E4M3: 8, E5M2: 15, E2M1: 2)."""
        top = (1 << self.ebits) - 1
        return (top - 1 if self.specials == "ieee" else top) - self.bias

    @property
    def max(self) -> float:
        """Largest finite value."""
        mantissa_codes = 1 << self.mbits
        top_mantissa = mantissa_codes - (2 if self.specials == "fn" else 1)
        return (1 + top_mantissa / mantissa_codes) * 2.0 ** self.max_exponent

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (1 - self.bias - self.mbits)

    @cached_property
    def table(self) -> torch.Tensor:
        """fp32 value of every code 0 .. 2**bits - 1 (NaN codes hold NaN)."""
        codes = torch.arange(1 << self.bits, dtype=torch.int64)
        sign = torch.where((codes >> (self.ebits + self.mbits)) & 1 == 1, -1.0, 1.0).double()
        exponent = (codes >> self.mbits) & ((1 << self.ebits) - 1)
        mantissa = (codes & ((1 << self.mbits) - 1)).double()
        normal = (1 + mantissa / (1 << self.mbits)) * torch.pow(2.0, (exponent - self.bias).double())
        subnormal = mantissa * self.min_subnormal
        values = sign * torch.where(exponent == 0, subnormal, normal)
        top = (1 << self.ebits) - 1
        if self.specials == "ieee":
            values = torch.where((exponent == top) & (mantissa == 0), sign * float("inf"), values)
            values = torch.where((exponent == top) & (mantissa != 0), float("nan"), values)
        elif self.specials == "fn":
            values = torch.where((exponent == top) & (mantissa == (1 << self.mbits) - 1), float("nan"), values)
        return values.float()

    @property
    def nan_code(self) -> int | None:
        """The canonical NaN code (the one torch's casts produce), or None when there is none."""
        if self.specials == "none":
            return None
        return (1 << (self.bits - 1)) - 1  # 0.111...1: E4M3 0x7F, E5M2 0x7F

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """fp32 values of unpacked codes (any integer dtype)."""
        return self.table.to(codes.device)[codes.long()]

    def encode(self, x: torch.Tensor, saturate: bool = True) -> torch.Tensor:
        """Codes (``uint8``) of ``x`` rounded to nearest, ties to even.

        ``saturate``: finite values beyond the largest and infinities become +-max (what torch's
        E4M3 cast and OCP's "satfinite" conversions do). Otherwise overflow becomes infinity in
        an IEEE-like format (torch's E5M2 cast) and NaN in an ``fn`` one. NaN becomes the NaN code
        with its sign (as torch's casts keep it);
        a format with no NaN (FP6, FP4) refuses NaN input."""
        x = x.float()
        nan = torch.isnan(x)
        if self.nan_code is None and bool(nan.any()):
            raise ValueError(f"{self.name} has no NaN encoding; the input holds NaN")
        negative = torch.signbit(x)
        magnitude = x.abs()
        if saturate:
            magnitude = magnitude.clamp(max=self.max)
        rounded = self._round(magnitude.nan_to_num(0.0))
        code = self._pack(rounded)
        overflow = rounded > self.max
        if not saturate and self.specials == "ieee":
            inf_code = ((1 << self.ebits) - 1) << self.mbits
            code = torch.where(overflow, inf_code, code)
        elif not saturate:
            code = torch.where(overflow, self.nan_code if self.nan_code is not None else 0, code)
        if self.nan_code is not None:
            code = torch.where(nan, self.nan_code, code)
        return (code | (negative.long() << (self.bits - 1))).to(torch.uint8)  # NaN keeps its sign too

    def _round(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Nearest value on this format's grid (unbounded above), ties to even; fp32, exact."""
        # Past twice the largest power of two everything overflows; capping keeps the quotient finite.
        magnitude = magnitude.clamp(max=2.0 ** (self.max_exponent + 2))
        _, exp2 = torch.frexp(magnitude)  # magnitude = m * 2**exp2, m in [0.5, 1)
        exponent = (exp2 - 1).clamp(min=1 - self.bias)  # subnormals share the smallest exponent's spacing
        quantum = torch.pow(2.0, (exponent - self.mbits).float())
        return torch.round(magnitude / quantum) * quantum  # torch.round: half to even

    def _pack(self, rounded: torch.Tensor) -> torch.Tensor:
        """Exponent and mantissa fields of non-negative grid values (int64; sign added later)."""
        _, exp2 = torch.frexp(rounded)
        normal = rounded >= self.min_normal
        exponent = torch.where(normal, exp2 - 1 + self.bias, 0)
        scale = torch.where(normal, torch.pow(2.0, (exp2 - 1).float()), self.min_normal)
        mantissa_unit = torch.where(normal, rounded / scale - 1.0, rounded / self.min_normal)
        mantissa = torch.round(mantissa_unit * (1 << self.mbits)).long()
        top = (1 << self.ebits) - 1
        exponent = exponent.clamp(max=top)  # overflowed values are replaced by the caller
        return (exponent.long() << self.mbits) | mantissa.clamp(max=(1 << self.mbits) - 1)

    def quantize(self, x: torch.Tensor, saturate: bool = True) -> torch.Tensor:
        """``x`` rounded to this format and back to fp32 (``decode(encode(x))``)."""
        return self.decode(self.encode(x, saturate))


E4M3 = FloatFormat("e4m3", ebits=4, mbits=3, bias=7, specials="fn")
E5M2 = FloatFormat("e5m2", ebits=5, mbits=2, bias=15, specials="ieee")
E3M2 = FloatFormat("e3m2", ebits=3, mbits=2, bias=3, specials="none")
E2M3 = FloatFormat("e2m3", ebits=2, mbits=3, bias=1, specials="none")
E2M1 = FloatFormat("e2m1", ebits=2, mbits=1, bias=1, specials="none")
FORMATS: dict[str, FloatFormat] = {f.name: f for f in (E4M3, E5M2, E3M2, E2M3, E2M1)}

# torch's native dtypes for the FP8 formats: the fast path for encoding, and the reference in tests.
TORCH_FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}

E8M0_BIAS = 127
E8M0_NAN = 0xFF


def e8m0_encode(exponent: torch.Tensor) -> torch.Tensor:
    """E8M0 codes of the powers of two ``2**exponent`` (integer exponents, -127 .. 127); the MX
    shared scale. Exponents above 127 (and a NaN marker of any value >= 128) give the NaN code."""
    exponent = exponent.long()
    code = (exponent.clamp(min=-E8M0_BIAS, max=E8M0_BIAS) + E8M0_BIAS)
    return torch.where(exponent > E8M0_BIAS, E8M0_NAN, code).to(torch.uint8)


def e8m0_decode(codes: torch.Tensor) -> torch.Tensor:
    """fp32 values ``2**(code - 127)`` of E8M0 codes; 0xFF is NaN. 2**-127 is an fp32 subnormal."""
    values = torch.pow(2.0, codes.long().double() - E8M0_BIAS).float()
    return torch.where(codes.long() == E8M0_NAN, float("nan"), values)
