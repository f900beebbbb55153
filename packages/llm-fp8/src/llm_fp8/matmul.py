"""Products of two scaled FP8 operands, with FP32 promotion of partial sums every 128 elements.

``scaled_matmul(a, b)`` computes ``a @ b.T`` for ``a`` (M, K) and ``b`` (N, K), both quantized
along K. As DeepSeek-V3 does on H800 tensor cores (arXiv 2412.19437, section 3.3.2, "increasing
accumulation precision"), the reduction runs in chunks of 128 elements of K: each chunk's sum of
FP8 products is formed on its own, multiplied by the chunk's two scales, and added to an FP32
accumulator. On CPU (and as the GPU fallback) this is emulated exactly: FP8 values are exact in
fp32, so are their products, and each chunk's sum is accumulated in fp32 (more precisely than the
about 14 bits of the H800 accumulator the paper measured). On CUDA, ``scaled_matmul_cuda`` calls
torch's FP8 kernels: ``torch.nn.functional.scaled_mm`` with the DeepSeek blockwise recipes
(``BlockWise1x128`` / ``BlockWise128x128``, cuBLAS on SM90) or per-tensor scales, and falls back to
the emulation for a combination the installed torch refuses.
"""

from __future__ import annotations

import logging

import torch

from llm_fp8.scaling import TILE, Fp8Tensor

log = logging.getLogger("llmt.fp8")
PROMOTION_INTERVAL = TILE  # elements of the reduction dimension between promotions to fp32


def chunk_scales(q: Fp8Tensor) -> torch.Tensor:
    """The decode scale of each (row, 128-chunk of the columns): (R, ceil(C / 128))."""
    rows, cols = q.data.shape
    chunks = -(-cols // TILE)
    if q.granularity in ("tensor", "row"):
        return q.scale.float().expand(rows, chunks)
    if q.granularity == "tile":
        return q.scale.float()
    return q.scale.float().repeat_interleave(TILE, dim=0)[:rows]


def scaled_matmul(a: Fp8Tensor, b: Fp8Tensor) -> torch.Tensor:
    """``a.dequantize() @ b.dequantize().T`` as FP8 hardware computes it: (M, N) in fp32."""
    if a.data.shape[1] != b.data.shape[1]:
        raise ValueError(f"reduction dimensions differ: {tuple(a.data.shape)} and {tuple(b.data.shape)}")
    a_values, b_values = a.data.float(), b.data.float()
    a_scales, b_scales = chunk_scales(a), chunk_scales(b)
    out = torch.zeros(a_values.shape[0], b_values.shape[0], dtype=torch.float32, device=a_values.device)
    for t, start in enumerate(range(0, a_values.shape[1], PROMOTION_INTERVAL)):
        chunk = slice(start, start + PROMOTION_INTERVAL)
        partial = a_values[:, chunk] @ b_values[:, chunk].T  # exact products, fp32 sum of <= 128
        out.addcmul_(partial, a_scales[:, t, None] * b_scales[None, :, t])
    return out


# Combinations the installed torch refused on this GPU, so that each is tried once per process.
_REFUSED: set[tuple[str, str, str, str]] = set()


def scaled_matmul_cuda(a: Fp8Tensor, b: Fp8Tensor) -> torch.Tensor:
    """``scaled_matmul`` on torch's FP8 GEMM kernels where they apply; the emulation otherwise."""
    key = (a.granularity, b.granularity, a.fmt, b.fmt)
    if key not in _REFUSED and kernel_shapes_ok(a, b):
        try:
            return _kernel_matmul(a, b)
        except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:
            _REFUSED.add(key)
            log.warning("FP8 kernel refused %s x %s (%s, %s): %s; emulating", a.granularity, b.granularity,
                        a.fmt, b.fmt, exc)
    return scaled_matmul(a, b)


def kernel_shapes_ok(a: Fp8Tensor, b: Fp8Tensor) -> bool:
    """Shapes cuBLAS takes: dimensions multiples of 16, and of 128 along K for blockwise scales."""
    (m, k), n = a.data.shape, b.data.shape[0]
    if a.data.device.type != "cuda" or m % 16 or n % 16 or k % 16:
        return False
    blockwise = {a.granularity, b.granularity} & {"tile", "block"}
    return not blockwise or k % TILE == 0


def _kernel_matmul(a: Fp8Tensor, b: Fp8Tensor) -> torch.Tensor:
    from torch.nn.functional import ScalingType, scaled_mm

    recipes = {"tensor": ScalingType.TensorWise, "row": ScalingType.RowWise, "tile": ScalingType.BlockWise1x128,
               "block": ScalingType.BlockWise128x128}
    return scaled_mm(a.data.contiguous(), b.data.contiguous().t(), _kernel_scale(a, "a"), recipes[a.granularity],
                     _kernel_scale(b, "b"), recipes[b.granularity], output_dtype=torch.float32)


def _kernel_scale(q: Fp8Tensor, side: str) -> torch.Tensor:
    """Scales in the layout cuBLAS reads (torch's test_scaled_matmul_cuda.py spells them out)."""
    scale = q.scale.float()
    if q.granularity == "tensor":
        return scale.reshape(())
    if q.granularity == "row":  # a: (M, 1); b: (1, N)
        return scale.reshape(-1, 1) if side == "a" else scale.reshape(1, -1)
    if q.granularity == "tile":  # (rows, K / 128), outer-dimension major
        return scale.t().contiguous().t()
    # 128 x 128: (rows / 128, K / 128) padded to a multiple of 4 along K, then K-major
    pad = -scale.shape[1] % 4
    return torch.nn.functional.pad(scale, (0, pad)).t()
