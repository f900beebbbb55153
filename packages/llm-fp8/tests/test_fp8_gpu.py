"""On a CUDA GPU: the FP8 per-tile linear on torch's kernels equals the CPU emulation (forward and
gradients, up to fp32 summation order). ``tools/check_fp8_gpu.py`` adds the throughput figures."""

from __future__ import annotations

import pytest
import torch

from llm_fp8.fp8_linear import Fp8Linear
from llm_fp8.recipes import Fp8Config, Fp8TensorwiseConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("config", [Fp8Config(), Fp8TensorwiseConfig()], ids=["deepseek", "tensorwise"])
def test_cuda_fp8_linear_equals_the_cpu_emulation(config):
    g = torch.Generator().manual_seed(0)
    cpu = Fp8Linear(torch.nn.Linear(512, 384, bias=False), config)
    cuda = Fp8Linear(torch.nn.Linear(512, 384, bias=False).cuda(), config)
    with torch.no_grad():
        cuda.weight.copy_(cpu.weight.cuda())
    x = torch.randn(256, 512, generator=g)
    upstream = torch.randn(256, 384, generator=g)
    xc, xg = x.clone().requires_grad_(True), x.cuda().requires_grad_(True)
    yc, yg = cpu(xc), cuda(xg)
    yc.backward(upstream)
    yg.backward(upstream.cuda())
    for a, b in ((yg, yc), (xg.grad, xc.grad), (cuda.weight.grad, cpu.weight.grad)):
        assert float((a.cpu() - b).abs().max()) <= 1e-4 * float(b.abs().max())
