"""Weights prepared for decoding: a few rows per matmul, many steps with the same weights.

A generation step multiplies one row per sequence by every weight matrix of the model. At that
shape a plain matmul runs far below the machine's speed, so ``generate`` prepares, once per call,
copies of the weights that decode faster:

- projections that read the same input are concatenated (q / k / v, and gate / up), so a layer
  runs four matmuls instead of seven;
- on CPU (fp32, no autocast) every matrix is reordered into oneDNN's blocked layout for the
  expected number of rows, as ``torch.compile``'s CPU weight freezing does; at 8 rows such a matmul
  runs two to three times faster than one on the plain layout, with fp32 results equal up to
  summation order.

These are copies: the model's parameters (names, storage, gradients) are untouched, and since they
are rebuilt for every ``generate`` call, weights changed in place by an optimizer step or a weight
update are always the ones used. Inference only: no gradient flows through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from llm_torch.linear import cpu_autocast, cpu_matmul_backend, onednn_linear


class DecodeLinear:
    """``F.linear(x, weight)`` without bias, on a frozen copy of ``weight`` packed for ``rows``."""

    def __init__(self, weight: torch.Tensor, rows: int):
        self.packed = pack_for_rows(weight.detach(), rows)
        # Once packed, the plain matrix is not needed: dropping it keeps a fused (concatenated)
        # matrix from being held twice. Packing only happens for fp32 inputs without autocast,
        # which is what a generate call then feeds in.
        self.weight = weight.detach() if self.packed is None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return onednn_linear(x, self.packed)
        return F.linear(x, self.weight)


def pack_for_rows(weight: torch.Tensor, rows: int) -> torch.Tensor | None:
    """oneDNN's packed copy of a fp32 CPU weight (None where that does not apply: other devices
    and dtypes, autocast, builds without oneDNN). Any number of rows works; ``rows`` picks the
    layout that is fastest for that many."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or cpu_autocast():
        return None
    if cpu_matmul_backend() != "onednn":
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight, rows)
    except (AttributeError, RuntimeError):  # an older or a different build of torch
        return None


@dataclass
class LayerWeights:
    """One decoder layer's matrices, input projections fused."""

    qkv: DecodeLinear  # q, k and v outputs stacked
    o: DecodeLinear
    gate_up: DecodeLinear  # gate and up outputs stacked
    down: DecodeLinear

    @classmethod
    @torch.no_grad()
    def of(cls, block: Any, rows: int) -> LayerWeights:
        attn, mlp = block.self_attn, block.mlp
        qkv = torch.cat((attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight))
        gate_up = torch.cat((mlp.gate_proj.weight, mlp.up_proj.weight))
        return cls(qkv=DecodeLinear(qkv, rows), o=DecodeLinear(attn.o_proj.weight, rows),
                   gate_up=DecodeLinear(gate_up, rows), down=DecodeLinear(mlp.down_proj.weight, rows))


@dataclass
class DecodeWeights:
    """Every layer's ``LayerWeights`` and the output projection, for one generate call."""

    layers: list[LayerWeights]
    lm_head: DecodeLinear

    @classmethod
    @torch.no_grad()
    def of(cls, model: Any, rows: int) -> DecodeWeights:
        """``model`` is a ``LlamaModel``; ``rows`` the number of sequences decoded together."""
        return cls(layers=[LayerWeights.of(block, rows) for block in model.model.layers],
                   lm_head=DecodeLinear(model.lm_head.weight, rows))
