"""GPU check of the nanotron engine: the real ``DistributedTrainer`` path in bf16 on one GPU.

A fresh ~10M-parameter model trains a few steps on a fixed batch (the loss must fall), is saved in
nanotron's native sharded format, reloaded into a new engine (step, optimizer and schedule must
continue: the next step's loss equals the uninterrupted one's), exported to HF, and its logits are
compared with transformers' ``LlamaForCausalLM`` on the GPU, and so is the top-8 of
``top_logprobs`` (what a distillation teacher gives). Prints one JSON line (and writes it
to ``$OUT/nanotron_gpu_check.json`` when ``OUT`` is set); exits 1 when a check fails, 0 with
``"skipped"`` when no GPU is visible.

    uv run python tools/nanotron_gpu_check.py              # tp = 1 on one GPU
    uv run python tools/nanotron_gpu_check.py --tp 2       # two GPUs
    uv run python tools/nanotron_gpu_check.py --device cpu --steps 3   # smoke run of this script on CPU (fp32)
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

from llm_core.builtins.losses import cross_entropy

SHAPE = dict(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8, num_kv_heads=4)
SYLLABLES = ("ka lo mi ne ru ta shi po ve an el or ur ist ing ter pra dol ben cor fan gil hum jor kel mun nar pes "
             "quo rim sol tun vir wex yal zor").split()  # enough distinct words for 1,024 BPE tokens


def tokenizer_folder(root: str) -> str:
    from llm_torch.tokenizer import train_bpe

    rng = random.Random(0)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(2000)]
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

    precision = "bf16" if args.device == "cuda" else "fp32"  # bf16 is the DistributedTrainer (GPU) path
    spec = EngineSpec(name="nanotron", device=args.device, precision=precision, options={"tp": args.tp})
    return build_train_engine(spec, get_registries(), optimizer=OptimizerSpec(lr=3e-3, schedule="constant"),
                              total_steps=100, seed=0, **source)


def logits_of(engine, batch):
    seen = {}

    def loss(logits):
        seen["logits"] = logits.detach().clone()
        return (logits * 0).sum()

    engine.forward_backward(batch, loss, scale=0.0)
    return seen["logits"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run of the script")
    args = parser.parse_args()
    report: dict = {"tp": args.tp, "device": args.device}
    if args.device == "cuda" and not torch.cuda.is_available():
        report["skipped"] = "no CUDA device"
        return finish(report, ok=True)
    from llm_core.specs import ModelShape

    root = tempfile.mkdtemp(prefix="llmt-nanotron-gpu-")
    tokenizer = tokenizer_folder(root)
    if args.device == "cuda":
        report["device"] = torch.cuda.get_device_name(0)
    start = time.perf_counter()
    policy = engine(args, model=ModelShape(**SHAPE), tokenizer=tokenizer, max_seq_len=256)
    report["build_s"] = round(time.perf_counter() - start, 1)
    vocab = policy.tokenizer.vocab_size
    batch = {"input_ids": torch.randint(3, vocab, (8, 256), generator=torch.Generator().manual_seed(0))}
    losses, times = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        losses.append(policy.train_step(batch, cross_entropy)["loss"])
        times.append(time.perf_counter() - t)
    report.update(losses=[round(x, 4) for x in losses], step_s=round(sorted(times)[len(times) // 2], 4))
    saved = os.path.join(root, "saved")
    policy.save(saved, extra_state={"cursor": 3})
    expected = policy.train_step(batch, cross_entropy)["loss"]
    restored = engine(args, checkpoint=saved)
    extra = restored.load(saved)
    again = restored.train_step(batch, cross_entropy)["loss"]
    report.update(resumed_step=restored.step, extra=extra, next_loss=expected, resumed_next_loss=again)
    exported = os.path.join(root, "hf")
    policy.export_hf(exported)
    from transformers import LlamaForCausalLM

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    reference = LlamaForCausalLM.from_pretrained(exported, dtype=dtype).to(args.device).eval()
    probe = batch["input_ids"][:2, :64]
    with torch.no_grad():
        expected_logits = reference(probe.to(args.device)).logits.float().cpu()
    diff = (logits_of(policy, {"input_ids": probe}) - expected_logits).abs()
    report.update(logits_max_abs_diff=figure(diff.max()), logits_mean_abs_diff=figure(diff.mean()))
    top, _ = policy.top_logprobs({"input_ids": probe}, k=8)
    top_diff = (top - torch.log_softmax(expected_logits, dim=-1).topk(8, dim=-1).values).abs()
    report.update(top8_logprobs_mean_abs_diff=figure(top_diff.mean()))
    falls_by = 0.5 if args.steps > 3 else 0.0  # a short smoke run only has to move the loss down
    ok = (losses[-1] < losses[0] - falls_by and restored.step == args.steps + 1
          and extra == {"cursor": 3} and abs(again - expected) < 2e-2 and diff.mean().item() < 2e-2
          and top_diff.mean().item() < 2e-2)
    return finish(report, ok)


def figure(value: torch.Tensor) -> float:
    return float(f"{value.item():.3g}")  # three significant digits, however small


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
