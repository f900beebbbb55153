"""Integer weight quantization: QAT with the straight-through estimator, PTQ, and the export format.

Weights (INT8 or INT4) are quantized symmetrically, per output channel (one scale per row) or per
group of ``group_size`` consecutive input features: ``scale = amax / qmax`` with ``qmax = 2**(bits-1)
- 1`` (127, 7), ``code = round(w / scale)`` (half to even) in ``[-qmax, qmax]`` (so -8 is unused at
INT4: the grid stays symmetric around 0). Activations can be fake-quantized to INT8 per token
(one dynamic scale per row, the same formula). QAT runs the forward pass on the quantized values
and passes the gradient straight through (Bengio et al. 2013; the estimator torchao's QAT uses):
d(quantized w)/dw is taken as 1, so the fp32 master weights learn what the rounding costs. PTQ is
the same quantizer applied once to trained weights, which is why the two compare fairly: what QAT
trains against is bit for bit what its export holds.

Export (``save_quantized`` / ``load_quantized``): one safetensors file, for each quantized weight
``<name>.codes`` (int8; at INT4 two codes per ``uint8``, the first in the low nibble, each a 4-bit
two's complement number) and ``<name>.scales`` (fp32, (rows, groups)); other tensors as they are;
the scheme in the file's metadata. Tied tensors (embeddings and output head) are written once, under
the first name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from llm_fp8.recipes import IntScheme, QatConfig

EPS = 1e-12


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return fn(x.detach())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        return grad, None


def straight_through(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn(x)`` in the forward pass, the identity's gradient in the backward pass (exactly
    ``fn(x)``, unlike ``x + (fn(x) - x).detach()``, which rounds twice in fp32)."""
    return _StraightThrough.apply(x, fn)


def _grouped(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    rows, cols = w.shape
    size = group_size or cols
    if cols % size:
        raise ValueError(f"group_size {size} does not divide the {cols} input features of a ({rows}, {cols}) "
                         "weight; pick a divisor or per-channel scales (group_size = null)")
    return w.reshape(rows, cols // size, size)


def quantize_int(w: torch.Tensor, bits: int, group_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int8 (rows, cols), scales fp32 (rows, groups)) of a 2-d weight."""
    qmax = 2 ** (bits - 1) - 1
    groups = _grouped(w.float(), group_size)
    scales = groups.abs().amax(dim=-1).clamp(min=EPS) / qmax
    codes = torch.round(groups / scales[..., None]).clamp(-qmax, qmax)
    return codes.reshape(w.shape).to(torch.int8), scales


def dequantize_int(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    rows, cols = codes.shape
    groups = codes.float().reshape(rows, scales.shape[1], -1)
    return (groups * scales[..., None]).reshape(rows, cols)


def fake_quantize_int(w: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """``w`` on its integer grid, in fp32 (what PTQ's export decodes to)."""
    return dequantize_int(*quantize_int(w, bits, group_size))


def fake_quantize_activations(x: torch.Tensor) -> torch.Tensor:
    """INT8 per token: one dynamic scale per row of the last dimension."""
    rows = x.reshape(-1, x.shape[-1])
    return fake_quantize_int(rows, 8, None).reshape(x.shape).to(x.dtype)


class FakeQuantLinear(nn.Module):
    """A linear layer training against its quantized weights (and INT8 activations, if asked)."""

    def __init__(self, linear: nn.Linear, config: QatConfig):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scheme = self.config.weights
        weight = straight_through(self.weight, lambda w: fake_quantize_int(w, scheme.bits, scheme.group_size))
        if self.config.activations == "int8":
            x = straight_through(x, fake_quantize_activations)
        return torch.nn.functional.linear(x, weight.to(x.dtype), self.bias)


# --- export -------------------------------------------------------------------------------------


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit two's complement codes per byte, the first in the low nibble (even column count)."""
    nibbles = (codes.to(torch.int16) & 0xF).to(torch.uint8)
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    low, high = (packed & 0xF).to(torch.int8), (packed >> 4).to(torch.int8)
    nibbles = torch.stack((low, high), dim=-1).reshape(*packed.shape[:-1], -1)
    return torch.where(nibbles > 7, nibbles - 16, nibbles)


def quantize_state(state: Mapping[str, torch.Tensor], scheme: IntScheme,
                   selected: Callable[[str], bool]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(exported tensors, dequantized state) for the 2-d weights whose module ``selected`` keeps."""
    exported: dict[str, torch.Tensor] = {}
    dequantized: dict[str, torch.Tensor] = {}
    storage: dict[int, str] = {}  # tied weights (embeddings and output head) are exported once
    for name, tensor in state.items():
        first = storage.setdefault(tensor.data_ptr(), name)
        if first != name:
            dequantized[name] = dequantized[first]
            continue
        module = name.removesuffix(".weight")
        if tensor.dim() == 2 and name.endswith(".weight") and selected(module):
            codes, scales = quantize_int(tensor, scheme.bits, scheme.group_size)
            exported[f"{name}.codes"] = pack_int4(codes) if scheme.bits == 4 else codes
            exported[f"{name}.scales"] = scales
            dequantized[name] = dequantize_int(codes, scales)
        else:
            exported[name] = tensor.detach().cpu().contiguous()
            dequantized[name] = tensor
    return exported, dequantized


def save_quantized(uri: str, exported: Mapping[str, torch.Tensor], scheme: IntScheme) -> None:
    from safetensors.torch import save

    from llm_core.artifacts import atomic_open

    metadata = {"format": "llmt-int-v1", "scheme": json.dumps(scheme.model_dump()),
                "packing": "int4: two codes per byte, low nibble first" if scheme.bits == 4 else "int8"}
    with atomic_open(uri, "wb") as handle:
        handle.write(save({k: v.contiguous() for k, v in exported.items()}, metadata=metadata))


def load_quantized(uri: str) -> dict[str, torch.Tensor]:
    """The weights of an export, decoded to fp32 (quantized ones from their codes and scales)."""
    import fsspec
    from safetensors.torch import load

    with fsspec.open(uri, "rb") as handle:
        raw = handle.read()
    metadata = safetensors_metadata(raw)
    if metadata.get("format") != "llmt-int-v1":
        raise ValueError(f"{uri}: not a quantized export (metadata format {metadata.get('format')!r}); "
                         "it is the 'quantized.safetensors' a quantize_weights stage writes")
    bits = json.loads(metadata["scheme"])["bits"]
    tensors = load(raw)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(".codes"):
            base = name.removesuffix(".codes")
            codes = unpack_int4(tensor) if bits == 4 else tensor
            out[base] = dequantize_int(codes, tensors[f"{base}.scales"])
        elif not name.endswith(".scales"):
            out[name] = tensor
    return out


def safetensors_metadata(raw: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (its header: 8 bytes of length, then JSON)."""
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + length]).get("__metadata__", {})
