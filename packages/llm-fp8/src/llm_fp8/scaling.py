"""FP8 quantization with scales per tensor, per row, per 1x128 tile or per 128x128 block.

``quantize_fp8(x, "e4m3", "tile")`` returns an ``Fp8Tensor``: the FP8 data (torch's native dtype)
and fp32 *decode* scales, so that ``x ~= data * scale`` element by element. The granularities are
those of DeepSeek-V3 (arXiv 2412.19437, section 3.3.2): activations in 1x128 tiles along the
reduction dimension, weights in 128x128 blocks; plus one scale per row or per tensor. A dimension
that is not a multiple of 128 ends with a shorter tile.

Scaling (what sets ``scale``):

- online: ``scale = amax / fmt.max`` with the amax of the values the scale covers, now;
- delayed: the amax is the largest of the last ``history`` steps' amaxes (NVIDIA Transformer
  Engine's ``DelayedScaling`` with ``amax_compute_algo = "max"``), see ``AmaxHistory``; values
  above the scaled range then saturate. Per tensor only: tiles change shape with every batch.
- ``power_of_two``: the scale is rounded up to a power of two, so that dequantization is exact
  and the amax still fits.

Saturation and special values, stated once: values beyond ``fmt.max`` after scaling, and
infinities, become +-``fmt.max`` (torch's E4M3 cast already does this; its E5M2 cast would give
infinity, so the data is clamped first). NaN stays NaN (the format's NaN code, sign kept). The
amax ignores infinities and NaN, so one bad value does not zero its whole tile; a tile whose
amax is 0 gets the scale of ``EPS`` (its data is 0 whatever the scale).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from llm_fp8.formats import FORMATS, TORCH_FP8
from llm_fp8.names import Fp8Name, Granularity

TILE = 128  # DeepSeek-V3's tile: 1 x 128 for activations and gradients, 128 x 128 for weights
EPS = 1e-12  # smallest amax a scale is computed from (torchao and TE use the same floor)


@dataclass(frozen=True)
class Fp8Tensor:
    """FP8 ``data`` (2-d, native dtype) and fp32 decode ``scale`` of one of four shapes:
    tensor ``()``, row ``(R, 1)``, tile ``(R, ceil(C / 128))``, block ``(ceil(R / 128), ceil(C / 128))``."""

    data: torch.Tensor
    scale: torch.Tensor
    granularity: Granularity
    fmt: Fp8Name

    def scale_per_element(self) -> torch.Tensor:
        """The decode scale of every element, (R, C)."""
        return expand_scale(self.scale, self.granularity, self.data.shape)

    def dequantize(self) -> torch.Tensor:
        return self.data.float() * self.scale_per_element()

    def t(self) -> Fp8Tensor:
        """The transpose, for the granularities whose scales transpose with it (tensor, block)."""
        if self.granularity not in ("tensor", "block"):
            raise ValueError(f"a {self.granularity}-scaled tensor cannot be transposed as it is; "
                             "quantize the transpose instead")
        scale = self.scale if self.granularity == "tensor" else self.scale.t()
        return Fp8Tensor(self.data.t(), scale, self.granularity, self.fmt)


def expand_scale(scale: torch.Tensor, granularity: Granularity, shape: torch.Size) -> torch.Tensor:
    """A granularity's scales broadcast to every element of a (R, C) tensor."""
    rows, cols = shape
    if granularity in ("tensor", "row"):
        return scale.expand(rows, cols)
    expanded = scale.repeat_interleave(TILE, dim=1)[:, :cols]
    if granularity == "block":
        expanded = expanded.repeat_interleave(TILE, dim=0)[:rows]
    return expanded


def tiles_of(x: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """|x| grouped so that the last dimension is what one scale covers, padded with zeros:
    tensor (1, R*C), row (R, C), tile (R, T, 128), block (Tr, Tc, 128 * 128)."""
    rows, cols = x.shape
    if granularity == "tensor":
        return x.reshape(1, -1)
    if granularity == "row":
        return x
    padded_cols, padded_rows = -cols % TILE, -rows % TILE
    if granularity == "tile":
        return (torch.nn.functional.pad(x, (0, padded_cols)) if padded_cols else x).reshape(rows, -1, TILE)
    padded = torch.nn.functional.pad(x, (0, padded_cols, 0, padded_rows)) if padded_cols or padded_rows else x
    grid = padded.reshape(padded.shape[0] // TILE, TILE, -1, TILE).transpose(1, 2)
    return grid.reshape(grid.shape[0], grid.shape[1], TILE * TILE)


def amax(x: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """The largest finite |x| under each scale (tensor: a 0-d tensor; row: (R, 1); tile / block: 2-d)."""
    result = tiles_of(x.float().abs(), granularity).amax(dim=-1)
    if not bool(torch.isfinite(result).all()):  # rare: mask infinities and NaN, then take it again
        finite = torch.where(torch.isfinite(x), x.float().abs(), 0.0)
        result = tiles_of(finite, granularity).amax(dim=-1)
    if granularity == "tensor":
        return result.reshape(())
    return result[:, None] if granularity == "row" else result


def scale_from_amax(amax_value: torch.Tensor, fmt: Fp8Name, power_of_two: bool = False) -> torch.Tensor:
    """Decode scale ``amax / fmt.max`` (the amax maps onto the format's largest value)."""
    scale = amax_value.float().clamp(min=EPS) / FORMATS[fmt].max
    if power_of_two:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    return scale


def quantize_fp8(x: torch.Tensor, fmt: Fp8Name = "e4m3", granularity: Granularity = "tile",
                 amax_value: torch.Tensor | None = None, power_of_two: bool = False) -> Fp8Tensor:
    """``x`` (2-d) as FP8 with decode scales; ``amax_value`` overrides the online amax (delayed scaling)."""
    if x.dim() != 2:
        raise ValueError(f"quantize_fp8 takes a 2-d tensor (rows, columns), got shape {tuple(x.shape)}")
    if amax_value is None:
        amax_value = amax(x, granularity)
    scale = scale_from_amax(amax_value, fmt, power_of_two)
    return Fp8Tensor(cast_saturated(divide_by_scale(x.float(), scale, granularity), fmt), scale, granularity, fmt)


def divide_by_scale(x: torch.Tensor, scale: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """``x / scale`` element by element; 1x128 tiles divide a (R, C / 128, 128) view in place of
    a full-size copy of the scales when C is a multiple of 128 (the common case)."""
    rows, cols = x.shape
    if granularity == "tile" and cols % TILE == 0:
        return (x.reshape(rows, -1, TILE) / scale[..., None]).reshape(rows, cols)
    return x / expand_scale(scale, granularity, x.shape)


def cast_saturated(x: torch.Tensor, fmt: Fp8Name) -> torch.Tensor:
    """Round to the FP8 format, nearest-even, saturating finite overflow and infinities; NaN stays NaN."""
    limit = FORMATS[fmt].max
    return x.clamp(min=-limit, max=limit).to(TORCH_FP8[fmt])


class AmaxHistory:
    """Delayed scaling for one tensor: the amax used now is the largest of the last ``length``
    recorded amaxes (before this step's); the first step, with no history, uses its own."""

    def __init__(self, length: int):
        self.history: deque[torch.Tensor] = deque(maxlen=length)

    def amax_for(self, x: torch.Tensor) -> torch.Tensor:
        current = amax(x.detach(), "tensor")
        used = torch.stack(list(self.history)).amax() if self.history else current
        self.history.append(current)
        return used
