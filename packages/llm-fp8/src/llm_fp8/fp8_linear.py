"""``Fp8Linear``: a linear layer whose three products run in FP8, for training.

Forward ``y = x W^T``: x and W in E4M3. Backward: the output gradient in E5M2 (the hybrid
format of NVIDIA Transformer Engine; set ``grad_format = "e4m3"`` for DeepSeek-V3's all-E4M3),
``dx = dy W`` and ``dW = dy^T x``. Every product quantizes its two operands along its own
reduction dimension from the high-precision tensors, so with the DeepSeek-V3 granularities the
activations are 1x128 tiles in the forward pass and 128x1 tiles (tiles of the transpose) for
``dW``, the gradient 1x128 tiles along the output features for ``dx`` and along the tokens for
``dW``, and the weight 128x128 blocks in both directions (a block is its own transpose). The
parameters stay fp32 (the master weights, which the optimizer and its state see); only the
products' operands are FP8. Partial sums are promoted to fp32 every 128 elements (``matmul.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from llm_fp8.matmul import scaled_matmul, scaled_matmul_cuda
from llm_fp8.names import Granularity
from llm_fp8.scaling import AmaxHistory, Fp8Tensor, quantize_fp8

if TYPE_CHECKING:  # pragma: no cover
    from llm_fp8.recipes import Fp8Config


class Fp8Linear(nn.Module):
    """FP8 products around the fp32 ``weight`` (and ``bias``) of the linear layer it replaces."""

    def __init__(self, linear: nn.Linear, config: Fp8Config):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # the same Parameter: names, optimizer state and ties unchanged
        self.bias = linear.bias
        self.config = config
        delayed = config.scaling == "delayed"
        # Delayed scaling keeps one amax history per operand of each product (in memory only: a
        # resumed run starts its histories afresh, see the README).
        self.histories = {(role, transposed): AmaxHistory(config.amax_history)
                          for role in ("input", "weight", "grad") for transposed in (False, True)} \
            if delayed else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        out = _Fp8Product.apply(rows, self.weight, self)
        out = out.reshape(*x.shape[:-1], self.out_features)
        if self.bias is not None:
            out = out + self.bias
        return out.to(x.dtype) if x.dtype != torch.float32 else out

    def quantize(self, x: torch.Tensor, role: str, transposed: bool = False) -> Fp8Tensor:
        """One operand of a product, quantized along its last dimension (the reduction one);
        ``transposed``: the operand is the transpose of the tensor ``role`` names."""
        c = self.config
        fmt = c.grad_format if role == "grad" else c.format
        granularity: Granularity = {"input": c.input_scaling, "weight": c.weight_scaling,
                                    "grad": c.grad_scaling}[role]
        amax_value = self.histories[role, transposed].amax_for(x) if self.histories is not None else None
        return quantize_fp8(x, fmt, granularity, amax_value, c.power_of_two_scales)

    def product(self, a: Fp8Tensor, b: Fp8Tensor) -> torch.Tensor:
        if a.data.is_cuda and self.config.kernels == "auto":
            return scaled_matmul_cuda(a, b)
        return scaled_matmul(a, b)

    def extra_repr(self) -> str:
        c = self.config
        return (f"in={self.in_features}, out={self.out_features}, {c.format}/{c.grad_format}, "
                f"scaling x:{c.input_scaling} w:{c.weight_scaling} dy:{c.grad_scaling} ({c.scaling})")


class _Fp8Product(torch.autograd.Function):
    """y = x W^T and its gradients, each product in FP8 (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, layer: Fp8Linear) -> torch.Tensor:
        with _no_autocast(x):
            ctx.save_for_backward(x, weight)
            ctx.layer = layer
            return layer.product(layer.quantize(x.float(), "input"), layer.quantize(weight.float(), "weight"))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        layer: Fp8Linear = ctx.layer
        grad_x = grad_weight = None
        with _no_autocast(grad):
            grad = grad.float()
            if ctx.needs_input_grad[0]:  # dx = dy W: reduction over the output features
                grad_x = layer.product(layer.quantize(grad, "grad"),
                                       layer.quantize(weight.float().t().contiguous(), "weight", True)).to(x.dtype)
            if ctx.needs_input_grad[1]:  # dW = dy^T x: reduction over the tokens
                grad_weight = layer.product(layer.quantize(grad.t().contiguous(), "grad", True),
                                            layer.quantize(x.float().t().contiguous(), "input", True))
        return grad_x, grad_weight, None


def _no_autocast(x: torch.Tensor) -> Any:
    """The FP8 emulation computes in fp32 on purpose: autocast would turn its products into bf16."""
    return torch.autocast(x.device.type, enabled=False)
