"""fp32 matmuls on CPU through oneDNN: the forward product and the input's gradient.

``torch.nn.functional.linear`` on a CPU runs fp32 matrix products through the BLAS torch was built
with (MKL in the PyPI wheels). oneDNN, which torch also ships, has its own just-in-time kernels
for the machine's vector units; on the AMD EPYC (AVX-512) machines this project is measured on
they run the model's forward products 1.4 to 2 times as fast as MKL's. ``Linear`` keeps
``nn.Linear``'s parameters (and so the Hugging Face names) and only changes how the product is
computed: in fp32, on CPU, without autocast; everything else (GPUs, bf16 autocast, builds without
oneDNN, layers with a bias) takes the usual ``F.linear``. Results equal ``F.linear``'s up to the
order of summation (relative differences around 1e-6). ``matmul`` is the same choice for a
plain product (the output layer and its backward pass in ``logprobs.py``).

Which of the two is faster depends on the CPU, so the choice is made once per process by
``cpu_matmul_backend``: the environment variable ``LLMT_CPU_MATMUL`` (``onednn``, ``blas`` or
``auto``, the default), where ``auto`` reads the CPU's vendor and vector flags (``cpu_features``)
and the instruction-set limit put on oneDNN (``onednn_isa_limit``).
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
def cpu_info() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (``vendor_id``, ``model name``, ``cpu family``,
    ``model``, ``flags`` ...); empty where there is none (macOS, Windows)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break  # every processor repeats the same block
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


@functools.cache
def cpu_features() -> tuple[str, frozenset[str]]:
    """(vendor id, e.g. ``AuthenticAMD`` / ``GenuineIntel``; the CPU's flags) from ``cpu_info``.

    Where there is no /proc/cpuinfo the vendor is ``platform.processor()`` and the flags are empty:
    ``auto`` then takes the BLAS."""
    fields = cpu_info()
    if not fields:
        return platform.processor(), frozenset()
    return fields.get("vendor_id", ""), frozenset(fields.get("flags", "").split())


# oneDNN instruction-set limits (``ONEDNN_MAX_CPU_ISA``) that leave it no AVX-512 kernels.
ONEDNN_LIMITS_WITHOUT_AVX512 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"})


def onednn_isa_limit() -> str:
    """The instruction-set limit this process puts on oneDNN (``ONEDNN_MAX_CPU_ISA``, or its older
    name ``DNNL_MAX_CPU_ISA``), upper-cased; empty when there is none."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def choose_backend(vendor: str, flags: frozenset[str], onednn_limit: str = "") -> MatmulBackend:
    """oneDNN on AMD CPUs with AVX-512 that oneDNN may use, the BLAS (MKL) everywhere else.

    Measured (fp32, 1 thread, 2048 x 256 x 768 and the backward products): on AMD EPYC with
    AVX-512 oneDNN runs about 1.4-2x MKL, whose AMD code paths are AVX2 (7.9 against 11.5 ms on
    an AMD EPYC Zen 4 with AVX-512); on the same CPU with oneDNN held to AVX2 (``onednn_limit``, see
    ``onednn_isa_limit``) its kernels lose to MKL (the projections' forward and backward at the
    tiny-r1 shape, 2 threads: 23-27 against 19-22 ms), as they do on AVX2-only AMD EPYC (Zen 3:
    training 0.91x transformers with oneDNN); on Intel Xeon MKL's own AVX-512 and AVX2 kernels
    are at least as fast (README, "Benchmarks")."""
    if (vendor == "AuthenticAMD" and "avx512f" in flags
            and onednn_limit.upper() not in ONEDNN_LIMITS_WITHOUT_AVX512):
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
    backend = choose_backend(*cpu_features(), onednn_isa_limit()) if requested == "auto" else requested
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

    - ``packed``, oneDNN's blocked copy: where oneDNN is the backend; on AMD CPUs (vendor
      ``AuthenticAMD``), whatever the backend; elsewhere for a matrix of at least
      ``PACK_MATRIX_BYTES`` and for every matrix of a model larger than the last-level cache (each
      step then streams it from memory);
    - otherwise ``transposed``, a (in, out) copy multiplied as ``x @ w``, when the matrix is at
      least as wide as it is deep, and ``plain`` ``F.linear`` when it is deeper than wide.

    Measured at 8 rows on a 2-core Intel Xeon @ 2.60GHz, AVX-512 (MKL, 2 threads, us per product): 256 -> 1536 plain
    84, transposed 53, packed 92; 768 -> 256 plain 28, transposed 44; 256 -> 8192 (the tiny LM
    head) plain 1135, transposed 711, packed 548; SmolLM2-135M's matrices, streamed: plain 5-12,
    transposed 11-14, packed 11-17 GB/s. On a 2-core AMD EPYC Zen 5 (family 26 model 2, AVX-512)
    with every library held to AVX2, where MKL is the backend, the packed copy won for the small
    matrices too (8 rows, 2 threads, us, plain / transposed / packed): 256 -> 512 47 / 51 / 40,
    256 -> 1536 118 / 136 / 70, 768 -> 256 62 / 61 / 47, 256 -> 8192 867 / 951 / 267; only 256 ->
    256 went the other way (24 / 24 / 30). The benchmark's tiny generation went from 1,394 to 1,771
    tok/s with it (the same emulation). In tiny-r1's ``eval`` (128-256 rows that finish at
    different steps, 1 thread) it changed nothing in time and raised the peak memory by 40 MiB to
    0.13 GiB. Deterministic, like the backend rule, so that every process decodes with the same
    arithmetic."""
    matrix_bytes = out_features * in_features * 4
    if onednn_available() and (cpu_matmul_backend() == "onednn" or cpu_features()[0] == "AuthenticAMD"
                               or matrix_bytes >= PACK_MATRIX_BYTES or model_bytes > last_level_cache_bytes()):
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


def _as_weight(w: torch.Tensor) -> torch.Tensor:
    """``w`` as oneDNN's weight argument, which it reads in place when row-major or transposed."""
    return w if w.is_contiguous() or w.t().is_contiguous() else w.contiguous()


def onednn_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` (2-D fp32) by oneDNN: ``onednn_linear(a, b.T)``, or ``onednn_linear(b.T, a).T``
    when ``a`` is a transposed view larger than ``b``.

    oneDNN copies an input that is not row-major, so of the two forms the one whose copy is the
    smaller is taken (the output layer's ``dW = dlogits^T h`` copies the hidden states, not the
    logits' gradient)."""
    if a.is_contiguous() or a.numel() <= b.numel():
        return onednn_linear(a.contiguous(), _as_weight(b.t()))
    return onednn_linear(b.t().contiguous(), _as_weight(a)).t()


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None,
           accumulate: bool = False) -> torch.Tensor:
    """``a @ b`` for 2-D matrices, by oneDNN where ``use_onednn`` says it is this process's backend,
    else by the BLAS. With ``out`` the product is written into it, or added to it (``accumulate``);
    the BLAS does both in place (``torch.mm(out=)``, ``addmm_``), oneDNN through one temporary."""
    if use_onednn(a, b):
        product = onednn_matmul(a, b)
        if out is None:
            return product
        return out.add_(product) if accumulate else out.copy_(product)
    if out is None:
        return a @ b
    return out.addmm_(a, b) if accumulate else torch.mm(a, b, out=out)


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T and dx = dy W by oneDNN; dW = dy^T x by the BLAS.

    For dW oneDNN must copy one transposed operand and returns a transposed gradient, which
    autograd copies again into the parameter's layout; the BLAS reads the transposed operand in
    place. Measured on a 2-core AMD EPYC Zen 4 (AVX-512, 2 threads, ms, MKL / oneDNN with that
    copy): 3072 rows x 128 -> 384 2.0 / 2.6, 2048 x 256 -> 768 4.2 / 4.7, 1024 x 576 -> 1536
    9.8 / 11.1; only a deep, narrow matrix went the other way (3072 x 384 -> 128: 2.7 / 1.9)."""

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
            grad_weight = grad.reshape(-1, grad.shape[-1]).t() @ x.reshape(-1, x.shape[-1])
        return grad_x, grad_weight


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) whose fp32 CPU products go through oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None and use_onednn(x, self.weight):
            return _OneDNNLinear.apply(x, self.weight)
        return F.linear(x, self.weight, self.bias)
