"""Weights prepared for decoding: a few rows per matmul, many steps with the same weights.

A generation step multiplies one row per sequence by every weight matrix of the model. At that
shape a plain matmul runs far below the machine's speed, so ``generate`` decodes with copies of the
weights that decode faster, prepared once per weight change (``DecodeWeightsCache``, below):

- projections that read the same input are concatenated (q / k / v, and gate / up), so a layer
  runs four matmuls instead of seven;
- on CPU (fp32, no autocast) each matrix is copied into the layout that multiplies a few rows
  fastest (``linear.decode_layout``): oneDNN's blocked layout for the expected number of rows, as
  ``torch.compile``'s CPU weight freezing does, on AMD CPUs and, elsewhere, for large matrices
  and models that do not fit in the CPU's cache; a transposed copy for the smaller wide ones; the
  matrix as it is otherwise. At 8 rows this runs 1.3 to 3.2 times faster than ``F.linear`` on the
  plain layout, with fp32 results equal up to summation order.

These are copies: the model's parameters (names, storage, gradients) are untouched. Inference
only: no gradient flows through them. Building them copies every matrix, which is not free (0.34 to
0.46 s for SmolLM2-135M on a 2-core AMD EPYC Zen 4 (AVX-512) under the AVX2 emulation, mostly first touches
of the new memory: about 3 ms of each step of a 128-token generation). ``DecodeWeightsCache`` keeps
the last copy for the next ``generate`` call while the weights are unchanged, as in evaluation,
which decodes batch after batch with the same weights; without one, every call builds its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from llm_torch.linear import DecodeLayout, cpu_autocast, decode_layout, onednn_linear


class DecodeLinear:
    """``F.linear(x, weight)`` without bias, on a frozen copy of ``weight`` in ``layout``
    (``linear.decode_layout``) where that applies: fp32 on CPU without autocast, which is what a
    generate call then feeds in; elsewhere the plain matrix."""

    def __init__(self, weight: torch.Tensor, rows: int, layout: DecodeLayout):
        weight = weight.detach()
        cpu_fp32 = weight.device.type == "cpu" and weight.dtype == torch.float32 and not cpu_autocast()
        self.packed = pack_for_rows(weight, rows) if layout == "packed" and cpu_fp32 else None
        self.transposed = weight.t().contiguous() if layout == "transposed" and cpu_fp32 else None
        # A packed or transposed copy replaces the matrix: a fused (concatenated) one is not held twice.
        self.weight = weight if self.packed is None and self.transposed is None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return onednn_linear(x, self.packed)
        if self.transposed is not None:
            return x @ self.transposed
        return F.linear(x, self.weight)


def pack_for_rows(weight: torch.Tensor, rows: int) -> torch.Tensor | None:
    """oneDNN's packed copy of a fp32 CPU weight (None for builds without oneDNN). Any number of
    rows works; ``rows`` picks the layout that is fastest for that many."""
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
    def of(cls, block: Any, rows: int, model_bytes: int) -> LayerWeights:
        attn, mlp = block.self_attn, block.mlp
        qkv = torch.cat((attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight))
        gate_up = torch.cat((mlp.gate_proj.weight, mlp.up_proj.weight))
        matrices = (qkv, attn.o_proj.weight, gate_up, mlp.down_proj.weight)
        return cls(*(decode_linear(w, rows, model_bytes) for w in matrices))


@dataclass
class DecodeWeights:
    """Every layer's ``LayerWeights`` and the output projection, for one generate call."""

    layers: list[LayerWeights]
    lm_head: DecodeLinear

    @classmethod
    @torch.no_grad()
    def of(cls, model: Any, rows: int) -> DecodeWeights:
        """``model`` is a ``LlamaModel``; ``rows`` the number of sequences decoded together."""
        matrices = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)}
        model_bytes = sum(w.numel() * w.element_size() for w in matrices.values())
        return cls(layers=[LayerWeights.of(block, rows, model_bytes) for block in model.model.layers],
                   lm_head=decode_linear(model.lm_head.weight, rows, model_bytes))


def decode_linear(weight: torch.Tensor, rows: int, model_bytes: int) -> DecodeLinear:
    """A ``DecodeLinear`` in the layout ``decode_layout`` picks for this matrix and model size."""
    return DecodeLinear(weight, rows, decode_layout(weight.shape[0], weight.shape[1], model_bytes))


class DecodeWeightsCache:
    """The ``DecodeWeights`` of the last ``generate`` call, reused by the next one while the model's
    matrices are unchanged; one copy at a time (``clear`` frees it).

    A kept copy is reused when the same number of rows is decoded, under the same autocast state,
    and every matrix is the same tensor (identity, storage, shape, dtype) at the same version
    counter. The version counter catches ``copy_``, ``load_state_dict`` and other in-place writes;
    it misses two kinds of change, which whoever makes them must report with ``clear``: writes
    through ``.data`` and a fused optimizer's step (``torch.optim.AdamW(fused=True)`` leaves the
    counter as it is). ``TorchEngine`` clears it at every forward / backward pass, optimizer step,
    weight update and load, and in ``sleep``.
    """

    def __init__(self) -> None:
        self._weights: DecodeWeights | None = None
        self._key: tuple | None = None

    def get(self, model: Any, rows: int) -> DecodeWeights:
        key = (rows, cpu_autocast(), _matrix_versions(model))
        if key != self._key:  # the key is None while nothing is kept
            self.clear()  # the old copy is freed before the new one is built
            self._weights, self._key = DecodeWeights.of(model, rows), key
        return self._weights

    def clear(self) -> None:
        self._weights = self._key = None


def _matrix_versions(model: Any) -> tuple:
    """Identity, storage, shape, dtype and version counter of every matrix ``DecodeWeights`` copies."""
    return tuple((id(m.weight), m.weight.data_ptr(), m.weight._version, tuple(m.weight.shape), m.weight.dtype)
                 for m in model.modules() if isinstance(m, torch.nn.Linear))
