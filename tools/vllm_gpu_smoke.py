"""GPU smoke test of the vllm rollout engine, for a machine with CUDA and vLLM's CUDA build.

Install vLLM's CUDA environment once (a fresh virtualenv beside the workspace; vLLM pins its own
CUDA torch, so it never shares the workspace's):

    uv run llmt vllm setup --build cuda --env .venvs/vllm-cuda
    # the same by hand: python3.11 -m venv .venvs/vllm-cuda && .venvs/vllm-cuda/bin/pip install vllm==0.32.0

then run this (about 2 minutes on one GPU):

    LLMT_VLLM_ENV=.venvs/vllm-cuda uv run python tools/vllm_gpu_smoke.py

It starts vLLM on ``cuda`` (sleep mode on, half the GPU's memory), and checks what the CPU tests
check, on the GPU: greedy tokens equal the embedded engine's (both fp32), sampled-token log-probs
against teacher forcing (printed), weight sync from ``hf_state_dict()`` by both routes token for
token, and sleep / wake (GPU memory before and after). Then the same recipe runs on GPUs with
``--set 'stages.grpo.rollout={name = "vllm", device = "cuda", options = {gpu_memory_utilization = 0.4,
enable_sleep_mode = true}}'``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from llm_core.builtins.losses import cross_entropy

SHAPE = dict(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4, num_kv_heads=2)


def gpu_memory_mib() -> str:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader"], capture_output=True,
                         text=True)
    return out.stdout.strip() or "?"


def trained_policy(tokenizer: str, seed: int):
    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

    engine = build_train_engine(EngineSpec(name="torch", device="cuda"), get_registries(), model=ModelShape(**SHAPE),
                                tokenizer=tokenizer, optimizer=OptimizerSpec(lr=1e-2, schedule="constant"), seed=seed)
    ids = torch.randint(3, engine.tokenizer.vocab_size, (4, 32), generator=torch.Generator().manual_seed(seed))
    for _ in range(4):
        engine.train_step({"input_ids": ids.tolist()}, cross_entropy)
    return engine


def main() -> None:
    from llm_core.engines import build_rollout_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import RolloutSpec, SamplingSpec
    from llm_torch.tokenizer import train_bpe

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this smoke test is for a GPU machine (the CPU tests: uv run pytest -m vllm)")
    work = Path(tempfile.mkdtemp(prefix="vllm-gpu-smoke-"))
    words = "the a river city school music water energy market language science valley garden".split()
    train_bpe([" ".join(words[i:] + words[:i]) for i in range(len(words))] * 30, vocab_size=400).save(str(work / "tok"))
    policy, new = trained_policy(str(work / "tok"), 0), trained_policy(str(work / "tok"), 1)
    policy.export_hf(str(work / "policy"))
    spec = RolloutSpec(name="vllm", device="cuda", options={"gpu_memory_utilization": args.gpu_memory_utilization,
                                                            "enable_sleep_mode": True, "max_model_len": 1024})
    start = time.perf_counter()
    engine = build_rollout_engine(spec, get_registries(), checkpoint=str(work / "policy"))
    print(f"vLLM up in {time.perf_counter() - start:.0f} s; GPU memory {gpu_memory_mib()}")
    greedy = SamplingSpec(max_new_tokens=32, temperature=0)
    prompts = [[5, 6, 7, 8], [9, 10], [40, 41, 42]]
    tokens = lambda e: [g[0].token_ids for g in e.generate(prompts, 1, greedy)]  # noqa: E731
    print("greedy equal to the embedded engine:", tokens(engine) == tokens(policy))
    sampled = engine.generate(prompts, 8, SamplingSpec(max_new_tokens=32, temperature=1.0, seed=0))
    gap = 0.0
    for prompt, group in zip(prompts, sampled, strict=True):
        for s in group:
            row = prompt + s.token_ids
            forced = policy.logprobs({"input_ids": [row]})[0, len(prompt) - 1:len(row) - 1].cpu()
            gap = max(gap, (forced - torch.tensor(s.logprobs)).abs().max().item())
    print(f"max |sampled-token log-prob - teacher forcing|: {gap:.2e}")
    for route in ("worker", "hf_folder"):
        options = {"url": engine.client.url, "tensor_route": route}
        synced = build_rollout_engine(RolloutSpec(name="vllm", options=options), get_registries(),
                                      checkpoint=str(work / "policy"))
        start = time.perf_counter()
        synced.update_weights(new.hf_state_dict())
        print(f"update_weights ({route}): {time.perf_counter() - start:.2f} s, greedy follows the new weights:",
              tokens(synced) == tokens(new))
    engine.sleep()
    print(f"asleep: GPU memory {gpu_memory_mib()}")
    engine.wake()
    print(f"awake: GPU memory {gpu_memory_mib()}; greedy still the new weights':", tokens(engine) == tokens(new))
    engine.close()


if __name__ == "__main__":
    main()
