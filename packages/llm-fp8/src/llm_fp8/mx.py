"""OCP Microscaling (MX v1.0): blocks of 32 elements sharing one E8M0 (power-of-two) scale.

``quantize_mx(x, "e2m1")`` follows the specification's conversion (section 6.3): the shared scale
of a block is ``X = 2**(floor(log2(amax)) - emax_elem)``, with ``emax_elem`` the exponent of the
element format's largest normal value (E4M3 8, E5M2 15, E3M2 4, E2M3 2, E2M1 2), clamped to
E8M0's range; each element is ``V / X`` rounded to nearest-even in the element format, saturating
at its largest value. Formats: MXFP8 (E4M3, E5M2), MXFP6 (E3M2, E2M3), MXFP4 (E2M1).

Special values: a block holding NaN or an infinity gets the NaN scale (0xFF), as the
specification's formula gives for ``log2(inf)``, so the whole block decodes to NaN (torchao sets
NaN the same way but gives an infinity a large finite scale). A block of zeros gets the smallest
scale, 2**-127, and zero elements.

Training (emulated: the products run in fp32 on dequantized values, as torchao's emulated MX
path does; FP8 / FP6 / FP4 values and their power-of-two scales are exact in fp32):

- ``MxLinear``: MXFP8 for all three products, each operand in blocks of 32 along its own
  reduction dimension (what MX tensor cores need): forward ``x W^T``, ``dx = dy W``, ``dW = dy^T x``.
- ``MxWeightLinear``: only the weight is MX (any element format), blocks along the input
  features, fake-quantized: the forward pass uses the MX weight, the backward pass passes the
  weight's gradient straight through to the fp32 master weight (an experiment: MXFP4 / MXFP6
  weight training, which no reference implementation runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from llm_fp8.formats import FORMATS, TORCH_FP8, e8m0_decode, e8m0_encode
from llm_fp8.names import ElementName
from llm_fp8.qat import straight_through

if TYPE_CHECKING:  # pragma: no cover
    from llm_fp8.recipes import MxConfig, MxWeightsConfig

BLOCK = 32


@dataclass(frozen=True)
class MxTensor:
    """Element codes (uint8, one per element, shape of the input) and E8M0 scale codes (one per
    block of 32 along the last dimension)."""

    codes: torch.Tensor
    scales: torch.Tensor
    element: ElementName

    def dequantize(self) -> torch.Tensor:
        values = FORMATS[self.element].decode(self.codes)
        blocks = values.reshape(*values.shape[:-1], -1, BLOCK)
        return (blocks * e8m0_decode(self.scales)[..., None]).reshape(values.shape)


def shared_exponent(blocks: torch.Tensor, element: ElementName) -> torch.Tensor:
    """Unbiased E8M0 exponent of each block (last dimension); 128 marks a NaN scale."""
    amax = blocks.abs().amax(dim=-1)
    _, exp2 = torch.frexp(amax)  # floor(log2(amax)) = exp2 - 1 for finite, non-zero amax
    exponent = (exp2 - 1 - FORMATS[element].max_exponent).clamp(min=-127, max=127)
    exponent = torch.where(amax == 0, -127, exponent)
    return torch.where(torch.isfinite(amax), exponent, 128)  # inf or NaN in the block: NaN scale


def quantize_mx(x: torch.Tensor, element: ElementName) -> MxTensor:
    """``x`` (last dimension a multiple of 32) in an MX format."""
    if x.shape[-1] % BLOCK:
        raise ValueError(f"MX blocks are {BLOCK} elements along the last dimension; it has {x.shape[-1]}")
    blocks = x.float().reshape(*x.shape[:-1], -1, BLOCK)
    exponent = shared_exponent(blocks, element)
    scaled = blocks / torch.pow(2.0, exponent.clamp(max=127).float())[..., None]  # exact: a power of two
    scaled = torch.where(torch.isfinite(scaled), scaled, 0.0)  # NaN-scaled blocks decode to NaN anyway
    codes = encode_elements(scaled.reshape(x.shape), element)
    return MxTensor(codes, e8m0_encode(exponent), element)


def encode_elements(x: torch.Tensor, element: ElementName) -> torch.Tensor:
    """Saturating round-to-nearest-even codes; torch's own cast for the FP8 elements."""
    if element in TORCH_FP8:
        limit = FORMATS[element].max
        return x.clamp(min=-limit, max=limit).to(TORCH_FP8[element]).view(torch.uint8)
    return FORMATS[element].encode(x, saturate=True)


def mx_round(x: torch.Tensor, element: ElementName) -> torch.Tensor:
    """``x`` through an MX format and back, blocks along the last dimension; a last dimension
    that is not a multiple of 32 ends with a shorter block (zero padding does not move an amax)."""
    width = x.shape[-1]
    padded = torch.nn.functional.pad(x, (0, -width % BLOCK))
    return quantize_mx(padded, element).dequantize()[..., :width].to(x.dtype)


def mx_round_along(x: torch.Tensor, element: ElementName, dim: int) -> torch.Tensor:
    """``mx_round`` with the blocks along dimension ``dim`` of a 2-d tensor."""
    if dim in (-1, x.dim() - 1):
        return mx_round(x, element)
    return mx_round(x.t().contiguous(), element).t()


class MxLinear(nn.Module):
    """All three products of a linear layer in MX (MXFP8 by default), emulated."""

    def __init__(self, linear: nn.Linear, config: MxConfig):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        out = _MxProduct.apply(rows, self.weight, self.config).reshape(*x.shape[:-1], self.out_features)
        if self.bias is not None:
            out = out + self.bias
        return out.to(x.dtype) if x.dtype != torch.float32 else out


class _MxProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, config: MxConfig) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            ctx.save_for_backward(x, weight)
            ctx.config = config
            return mx_round(x.float(), config.activation) @ mx_round(weight.float(), config.weight).t()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        c = ctx.config
        grad = grad.float()
        grad_x = grad_weight = None
        with torch.autocast(grad.device.type, enabled=False):
            if ctx.needs_input_grad[0]:  # dx = dy W, blocks along the output features
                grad_x = (mx_round(grad, c.grad) @ mx_round_along(weight.float(), c.weight, 0)).to(x.dtype)
            if ctx.needs_input_grad[1]:  # dW = dy^T x, blocks along the tokens
                grad_weight = mx_round_along(grad, c.grad, 0).t() @ mx_round_along(x.float(), c.activation, 0)
        return grad_x, grad_weight, None


class MxWeightLinear(nn.Module):
    """A linear layer whose weight is fake-quantized to an MX format (activations untouched)."""

    def __init__(self, linear: nn.Linear, config: MxWeightsConfig):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = straight_through(self.weight, lambda w: mx_round(w.float(), self.config.weight))
        return torch.nn.functional.linear(x, weight.to(x.dtype), self.bias)
