"""GPU check of llm-fp8: the FP8 per-tile linear on CUDA against the CPU emulation, and its speed
against bf16 at 4096 and 8192 square shapes (target on an H100 / H200: >= 1.5x bf16).

    uv run python tools/check_fp8_gpu.py                 # both checks, a table and results JSON
    uv run python tools/check_fp8_gpu.py --sizes 4096    # one size
    uv run python tools/check_fp8_gpu.py --out results.json

1. Correctness: the same quantized operands (1x128 tiles of activations, 128x128 blocks of the
   weight, E4M3) multiplied by torch's FP8 kernel (``torch.nn.functional.scaled_mm`` with the
   DeepSeek blockwise recipes, cuBLAS on SM90) and by the exact emulation on the CPU; then a whole
   ``Fp8Linear`` forward and backward (E5M2 gradients) on CUDA against the same layer on the CPU.
   Differences come only from the order of fp32 summation: relative errors around 1e-6 pass.
2. Throughput (CUDA events, median of repeats after warm-up) of an (N x N) @ (N x N) product:
   bf16 ``torch.mm``; the FP8 per-tile GEMM on pre-quantized operands (the kernel alone); the
   FP8 tensor-wise GEMM; and the per-tile linear forward including the quantization of its
   activations (eager torch ops, which is what ``Fp8Linear`` runs today).

Which path ran is printed: when the installed torch refuses a blockwise kernel on this GPU, the
layer falls back to the emulation (correct, slow) and the script says so instead of a speedup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from llm_fp8 import matmul
from llm_fp8.fp8_linear import Fp8Linear
from llm_fp8.recipes import Fp8Config
from llm_fp8.scaling import quantize_fp8


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double().cpu() - expected.double().cpu()).abs().max() / expected.double().abs().max())


def check_correctness(m: int = 512, k: int = 1024, n: int = 768) -> dict:
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g) * 0.02
    qx, qw = quantize_fp8(x.cuda(), "e4m3", "tile"), quantize_fp8(w.cuda(), "e4m3", "block")
    matmul._REFUSED.clear()
    kernel = matmul.scaled_matmul_cuda(qx, qw)
    used_kernel = not matmul._REFUSED
    cpu = matmul.scaled_matmul(quantize_fp8(x, "e4m3", "tile"), quantize_fp8(w, "e4m3", "block"))
    result = {"shape": [m, k, n], "blockwise_kernel": used_kernel,
              "gemm_rel_error_vs_cpu_emulation": relative_error(kernel, cpu),
              "quantized_codes_equal_cpu": bool(torch.equal(qx.data.cpu().view(torch.uint8),
                                                            quantize_fp8(x, "e4m3", "tile").data.view(torch.uint8)))}
    layer_cpu = Fp8Linear(torch.nn.Linear(k, n, bias=False), Fp8Config())
    layer_gpu = Fp8Linear(torch.nn.Linear(k, n, bias=False).cuda(), Fp8Config())
    with torch.no_grad():
        layer_gpu.weight.copy_(layer_cpu.weight.cuda())
    upstream = torch.randn(m, n, generator=g)
    xc, xg = x.clone().requires_grad_(True), x.cuda().requires_grad_(True)
    yc, yg = layer_cpu(xc), layer_gpu(xg)
    yc.backward(upstream)
    yg.backward(upstream.cuda())
    result.update({"linear_forward_rel_error": relative_error(yg, yc),
                   "linear_grad_input_rel_error": relative_error(xg.grad, xc.grad),
                   "linear_grad_weight_rel_error": relative_error(layer_gpu.weight.grad, layer_cpu.weight.grad),
                   "refused_combinations": sorted(map(list, matmul._REFUSED))})
    result["passed"] = all(result[key] < 1e-4 for key in result if key.endswith("rel_error"))
    return result


def time_ms(fn, repeats: int = 20, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def throughput(size: int) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(size, size, device="cuda", generator=g)
    b = torch.randn(size, size, device="cuda", generator=g) * 0.02
    a16, b16 = a.bfloat16(), b.bfloat16()
    flops = 2 * size ** 3
    rows = {"bf16 torch.mm": time_ms(lambda: torch.mm(a16, b16.t()))}
    qa, qb = quantize_fp8(a, "e4m3", "tile"), quantize_fp8(b, "e4m3", "block")
    ta, tb = quantize_fp8(a, "e4m3", "tensor"), quantize_fp8(b, "e4m3", "tensor")
    matmul._REFUSED.clear()
    matmul.scaled_matmul_cuda(qa, qb)
    blockwise = ("tile", "block", "e4m3", "e4m3") not in matmul._REFUSED
    rows["fp8 per-tile GEMM (kernel only)" if blockwise else "fp8 per-tile GEMM (EMULATED: kernel refused)"] = \
        time_ms(lambda: matmul.scaled_matmul_cuda(qa, qb))
    rows["fp8 tensor-wise GEMM"] = time_ms(lambda: matmul.scaled_matmul_cuda(ta, tb))
    layer = Fp8Linear(torch.nn.Linear(size, size, bias=False).cuda(), Fp8Config())
    with torch.no_grad():
        rows["fp8 per-tile linear forward (with quantization)"] = time_ms(lambda: layer(a))
    base = rows["bf16 torch.mm"]
    return {"size": size, "blockwise_kernel": blockwise,
            "rows": {name: {"ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1),
                            "speedup_vs_bf16": round(base / ms, 3)} for name, ms in rows.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--out", default="", help="write the results as JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (the CPU emulation is tested by the default suite)")
        return 0
    props = torch.cuda.get_device_properties(0)
    results = {"device": props.name, "capability": list(torch.cuda.get_device_capability(0)),
               "torch": torch.__version__, "cuda": torch.version.cuda}
    print(f"{props.name} (sm_{props.major}{props.minor}), torch {torch.__version__}, CUDA {torch.version.cuda}")
    results["correctness"] = check_correctness()
    print(json.dumps(results["correctness"], indent=2))
    results["throughput"] = []
    for size in args.sizes:
        try:
            results["throughput"].append(throughput(size))
        except Exception as exc:  # noqa: BLE001 - report and go on to the next size
            results["throughput"].append({"size": size, "error": f"{type(exc).__name__}: {exc}"})
    print("\n| size | path | ms | TFLOP/s | vs bf16 |\n|---|---|---|---|---|")
    for entry in results["throughput"]:
        for name, row in entry.get("rows", {}).items():
            print(f"| {entry['size']} | {name} | {row['ms']} | {row['tflops']} | {row['speedup_vs_bf16']}x |")
        if "error" in entry:
            print(f"| {entry['size']} | error | {entry['error']} | | |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0 if results["correctness"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
