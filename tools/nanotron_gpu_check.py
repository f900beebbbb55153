"""GPU check of the nanotron engine: the real ``DistributedTrainer`` path in bf16 on one GPU.

A fresh ~10M-parameter model trains a few steps on a fixed batch (the loss must fall), is saved in
nanotron's native sharded format, reloaded into a new engine (step, optimizer and schedule must
continue: the next step's loss equals the uninterrupted one's), exported to HF, and its logits are
compared with transformers' ``LlamaForCausalLM`` on the GPU. Prints one JSON line (and writes it
to ``$OUT/nanotron_gpu_check.json`` when ``OUT`` is set); exits 1 when a check fails, 0 with
``"skipped"`` when no GPU is visible.

    uv run python tools/nanotron_gpu_check.py              # tp = 1 on one GPU
    uv run python tools/nanotron_gpu_check.py --tp 2       # two GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import torch

SHAPE = dict(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8, num_kv_heads=4)
WORDS = "the a river city school music water energy market language science valley garden".split()


def tokenizer_folder(root: str) -> str:
    from llm_torch.tokenizer import train_bpe

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(12)) for _ in range(2000)]
    folder = os.path.join(root, "tokenizer")
    tokenizer = train_bpe(texts, vocab_size=1024)
    if tokenizer.vocab_size % 8:
        raise SystemExit(f"tokenizer vocab {tokenizer.vocab_size} does not divide by 8; change the corpus")
    tokenizer.save(folder)
    return folder


def engine(args, **source):
    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec, OptimizerSpec

    spec = EngineSpec(name="nanotron", device="cuda", precision="bf16", options={"tp": args.tp})
    return build_train_engine(spec, get_registries(), optimizer=OptimizerSpec(lr=3e-3, schedule="constant"),
                              total_steps=100, seed=0, **source)


def logits_of(engine, batch):
    seen = {}

    def loss(logits):
        seen["logits"] = logits.detach().clone()
        return (logits * 0).sum()

    engine.forward_backward(batch, loss, scale=0.0)
    return seen["logits"]


def nll(logprobs, mask):
    return -(logprobs * mask).sum() / mask.sum()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    report: dict = {"tp": args.tp}
    if not torch.cuda.is_available():
        report["skipped"] = "no CUDA device"
        return finish(report, ok=True)
    from llm_core.specs import ModelShape

    root = tempfile.mkdtemp(prefix="llmt-nanotron-gpu-")
    tokenizer = tokenizer_folder(root)
    report["device"] = torch.cuda.get_device_name(0)
    start = time.perf_counter()
    policy = engine(args, model=ModelShape(**SHAPE), tokenizer=tokenizer, max_seq_len=256)
    report["build_s"] = round(time.perf_counter() - start, 1)
    batch = {"input_ids": torch.randint(3, 1024, (8, 256), generator=torch.Generator().manual_seed(0))}
    losses, times = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        losses.append(policy.train_step(batch, nll)["loss"])
        times.append(time.perf_counter() - t)
    report.update(losses=[round(x, 4) for x in losses], step_s=round(sorted(times)[len(times) // 2], 4))
    saved = os.path.join(root, "saved")
    policy.save(saved, extra_state={"cursor": 3})
    expected = policy.train_step(batch, nll)["loss"]
    restored = engine(args, checkpoint=saved)
    extra = restored.load(saved)
    again = restored.train_step(batch, nll)["loss"]
    report.update(resumed_step=restored.step, extra=extra, next_loss=expected, resumed_next_loss=again)
    exported = os.path.join(root, "hf")
    policy.export_hf(exported)
    from transformers import LlamaForCausalLM

    reference = LlamaForCausalLM.from_pretrained(exported, dtype=torch.bfloat16).cuda().eval()
    probe = batch["input_ids"][:2, :64]
    with torch.no_grad():
        expected_logits = reference(probe.cuda()).logits.float().cpu()
    diff = (logits_of(policy, {"input_ids": probe}) - expected_logits).abs()
    report.update(logits_max_abs_diff=round(diff.max().item(), 4), logits_mean_abs_diff=round(diff.mean().item(), 5))
    ok = (losses[-1] < losses[0] - 0.5 and restored.step == args.steps + 1 and extra == {"cursor": 3}
          and abs(again - expected) < 2e-2 and diff.mean().item() < 2e-2)
    return finish(report, ok)


def finish(report: dict, ok: bool) -> int:
    report["ok"] = ok
    line = json.dumps(report)
    print(line)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "nanotron_gpu_check.json"), "w") as handle:
            handle.write(line + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
