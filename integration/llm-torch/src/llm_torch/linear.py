"""fp32 matmuls on CPU through oneDNN, forward and backward.

``torch.nn.functional.linear`` on a CPU runs fp32 matrix products through the BLAS torch was built
with (MKL in the PyPI wheels). oneDNN, which torch also ships, has its own just-in-time kernels
for the machine's vector units; on the AMD EPYC (AVX-512) machines this project is measured on
they run the model's matmuls about twice as fast as MKL's, forward and backward. ``Linear`` keeps
``nn.Linear``'s parameters (and so the Hugging Face names) and only changes how the product is
computed: in fp32, on CPU, without autocast; everything else (GPUs, bf16 autocast, builds without
oneDNN, layers with a bias) takes the usual ``F.linear``. Results equal ``F.linear``'s up to the
order of summation (relative differences around 1e-6).

Which of the two is faster depends on the CPU, so the choice is made once per process by
``cpu_matmul_backend``: the environment variable ``LLMT_CPU_MATMUL`` (``onednn``, ``blas`` or
``auto``, the default), where ``auto`` reads the CPU's vendor and vector flags (``cpu_features``).
The rule is deterministic, never a timing, so that two processes on one machine (a run and its
resume) always multiply the same way.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def onednn_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` by oneDNN; ``weight`` is (out, in), plain or packed (``decode.py``)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


@functools.cache
def onednn_available() -> bool:
    """Whether this torch build runs ``onednn_linear`` (checked once, on a tiny product)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x, weight = torch.ones(2, 3), torch.ones(4, 3)
        return bool(torch.equal(onednn_linear(x, weight), F.linear(x, weight)))
    except (AttributeError, RuntimeError):  # an older or a different build of torch
        return False


MatmulBackend = Literal["onednn", "blas"]
BACKEND_VARIABLE = "LLMT_CPU_MATMUL"


@functools.cache
def cpu_features() -> tuple[str, frozenset[str]]:
    """(vendor id, e.g. ``AuthenticAMD`` / ``GenuineIntel``; the CPU's flags) from /proc/cpuinfo.

    Empty where there is no /proc/cpuinfo (macOS, Windows): ``auto`` then takes the BLAS."""
    try:
        with open("/proc/cpuinfo") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return platform.processor(), frozenset()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return fields.get("vendor_id", ""), frozenset(fields.get("flags", "").split())


def choose_backend(vendor: str, flags: frozenset[str]) -> MatmulBackend:
    """oneDNN on AMD CPUs with AVX-512, the BLAS (MKL) everywhere else.

    Measured (fp32, 1 thread, 2048 x 256 x 768 and the backward products): on AMD EPYC with
    AVX-512 oneDNN runs about 2x MKL, whose AMD code paths are slow; on AVX2-only AMD EPYC
    (Zen 3) oneDNN's AVX2 kernels lose to MKL (training 0.91x transformers with oneDNN); on Intel
    Xeon MKL's own AVX-512 and AVX2 kernels are at least as fast (README, "Benchmarks")."""
    if vendor == "AuthenticAMD" and "avx512f" in flags:
        return "onednn"
    return "blas"


@functools.cache
def cpu_matmul_backend() -> MatmulBackend:
    """The fp32 CPU matmul backend of this process: ``LLMT_CPU_MATMUL`` or the CPU's rule.

    oneDNN is only chosen where this torch build runs it. Cached: call ``cache_clear()`` after
    changing the variable (benchmarks comparing the two do)."""
    requested = os.environ.get(BACKEND_VARIABLE, "auto").strip().lower() or "auto"
    if requested not in ("auto", "onednn", "blas"):
        raise ValueError(f"{BACKEND_VARIABLE}={requested!r}: use onednn, blas or auto")
    backend = choose_backend(*cpu_features()) if requested == "auto" else requested
    return "onednn" if backend == "onednn" and onednn_available() else "blas"


@functools.cache
def last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache level (L3 on most servers), from sysfs; 32 MiB where unknown."""
    import glob

    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as handle:
                text = handle.read().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=32 * 2**20)


DecodeLayout = Literal["packed", "transposed", "plain"]
PACK_MATRIX_BYTES = 4 * 2**20  # a matrix this large is packed even when the model fits in cache


def decode_layout(out_features: int, in_features: int, model_bytes: int) -> DecodeLayout:
    """How decoding (a few rows at a time, ``decode.py``) multiplies by one fp32 CPU matrix.

    - ``packed``, oneDNN's blocked copy: where oneDNN is the backend, for a matrix of at least
      ``PACK_MATRIX_BYTES`` and for every matrix of a model larger than the last-level cache
      (each step then streams it from memory);
    - otherwise ``transposed``, a (in, out) copy multiplied as ``x @ w``, when the matrix is at
      least as wide as it is deep, and ``plain`` ``F.linear`` when it is deeper than wide.

    Measured at 8 rows on a 2-core Intel Xeon @ 2.60GHz, AVX-512 (MKL, 2 threads, us per product): 256 -> 1536 plain
    84, transposed 53, packed 92; 768 -> 256 plain 28, transposed 44; 256 -> 8192 (the tiny LM
    head) plain 1135, transposed 711, packed 548; SmolLM2-135M's matrices, streamed: plain 5-12,
    transposed 11-14, packed 11-17 GB/s. Deterministic, like the backend rule, so that every
    process decodes with the same arithmetic."""
    matrix_bytes = out_features * in_features * 4
    if onednn_available() and (cpu_matmul_backend() == "onednn" or matrix_bytes >= PACK_MATRIX_BYTES
                               or model_bytes > last_level_cache_bytes()):
        return "packed"
    return "transposed" if out_features >= in_features else "plain"


def cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 took no device argument
        return torch.is_autocast_cpu_enabled()


def use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not cpu_autocast() and cpu_matmul_backend() == "onednn")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T; dx = dy W; dW = dy^T x, each product by oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return onednn_linear(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_linear(grad, weight.t())
        if ctx.needs_input_grad[1]:
            rows_grad = grad.reshape(-1, grad.shape[-1])
            rows_x = x.reshape(-1, x.shape[-1])
            # oneDNN takes a transposed weight as it is but copies a transposed input, so the
            # smaller of the two goes in as the input: dW = dy^T x, or dW^T = x^T dy.
            if rows_grad.shape[1] >= rows_x.shape[1]:
                grad_weight = onednn_linear(rows_x.t(), rows_grad.t()).t()
            else:
                grad_weight = onednn_linear(rows_grad.t(), rows_x.t())
        return grad_x, grad_weight


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) whose fp32 CPU products go through oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None and use_onednn(x, self.weight):
            return _OneDNNLinear.apply(x, self.weight)
        return F.linear(x, self.weight, self.bias)
