"""DPO training step time and peak memory: llm-prefopt on the embedded engine vs TRL's ``DPOTrainer``.

Both sides train the same model (random weights of one shape, saved once as an HF folder and
loaded by each), on the same batch of token pairs, with the same precomputed reference log-probs,
the same loss (DPO sigmoid, beta 0.1), AdamW at the same settings and the same number of torch
threads; each side runs in its own fresh process, one after the other, side by side in one run.
Step time is the median over the timed steps (after warm-up steps); peak memory is the process's
peak resident set (VmHWM) during the timed steps, reset just before them (``/proc/self/clear_refs``),
and the resident set when they start.

    uv run python tools/bench_prefopt.py                       # both shapes, 8 pairs, 128 + 128 tokens
    uv run python tools/bench_prefopt.py --shapes tiny --steps 3 --warmup 1   # a smoke run
    uv run python tools/bench_prefopt.py --ppo-vs-grpo runs/prefopt-arena    # peak memory, PPO vs GRPO
    uv run python tools/bench_prefopt.py --ppo-vs-grpo runs/prefopt-arena \
        --checkpoint runs/smollm2-dpo/smollm2/checkpoint --prompts 4 --new-tokens 16 --steps 2

``--ppo-vs-grpo RUN`` runs a few steps of the arena's ``ppo`` (policy with value head, reference,
reward model) and ``grpo`` (policy, reference, verifier process) stages from a finished arena run,
each as its own ``llmt run`` process, and reports each process's peak resident set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    "tiny": dict(vocab_size=512, hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, num_kv_heads=2),
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
                         num_kv_heads=3),
}
EOS = 1


def kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak covers only what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def make_pairs(vocab: int, pairs: int, prompt_len: int, completion_len: int, seed: int) -> list[dict]:
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(n)]

    out = []
    for _ in range(pairs):
        prompt = ids(prompt_len)
        # completions of differing lengths, each ending with EOS, as TRL appends one
        chosen = ids(rng.randint(completion_len // 2, completion_len - 1)) + [EOS]
        rejected = ids(rng.randint(completion_len // 2, completion_len - 1)) + [EOS]
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def save_model(shape: str, folder: Path) -> None:
    import torch

    from llm_torch import hf
    from llm_torch.model import LlamaModel, ModelConfig

    torch.manual_seed(0)
    model = LlamaModel(ModelConfig(max_seq_len=1024, eos_id=EOS, pad_id=2, **SHAPES[shape]))
    hf.save_checkpoint(str(folder), model, None, {})


# -- the two contenders, each run in a child process ------------------------------------------------


def run_ours(args: argparse.Namespace, folder: str, pairs: list[dict]) -> dict:
    import torch

    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec, OptimizerSpec
    from llm_prefopt.losses import DpoConfig, PairwiseLoss

    torch.set_num_threads(args.threads)
    optimizer = OptimizerSpec(lr=1e-6, weight_decay=0.0, betas=(0.9, 0.999), grad_clip=1.0, schedule="constant")
    engine = build_train_engine(EngineSpec(name="torch"), get_registries(), checkpoint=folder, optimizer=optimizer,
                                total_steps=args.warmup + args.steps)
    rows = [p["prompt"] + side for p in pairs for side in (p["chosen"], p["rejected"])]
    masks = [[0] * len(p["prompt"]) + [1] * len(side) for p in pairs for side in (p["chosen"], p["rejected"])]
    batch = {"input_ids": rows, "loss_mask": masks}
    batch["ref_logps"] = engine.logprobs(batch).sum(-1).tolist()  # the precomputed reference (same weights)
    loss = PairwiseLoss(DpoConfig(beta=0.1), "dpo")
    losses = [engine.train_step(batch, loss)["loss"] for _ in range(args.warmup)]
    start_rss = kib("VmRSS")
    reset_peak()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        losses.append(engine.train_step(batch, loss)["loss"])
        times.append(time.perf_counter() - t)
    # the mean over every step, as TRL's training_loss
    return {"times": times, "peak_kib": kib("VmHWM"), "start_kib": start_rss, "loss": sum(losses) / len(losses)}


def run_trl(args: argparse.Namespace, folder: str, pairs: list[dict]) -> dict:
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(args.threads)
    vocab = {f"t{i}": i for i in range(SHAPES[args.shape]["vocab_size"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=f"t{EOS}", pad_token="t2")

    def text(ids: list[int]) -> str:
        return " ".join(f"t{i}" for i in ids)

    dataset = Dataset.from_list([{"prompt": text(p["prompt"]) + " ", "chosen": text(p["chosen"]),
                                  "rejected": text(p["rejected"])} for p in pairs])
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.started, self.peak, self.start_rss = [], None, 0, 0

        def on_step_begin(self, args_, state, control, **kw):
            if state.global_step == args.warmup:
                self.start_rss = kib("VmRSS")
                reset_peak()
            self.started = time.perf_counter()

        def on_step_end(self, args_, state, control, **kw):
            if state.global_step > args.warmup:
                self.times.append(time.perf_counter() - self.started)
                self.peak = kib("VmHWM")

    config = DPOConfig(output_dir=tempfile.mkdtemp(), loss_type=["sigmoid"], beta=0.1, learning_rate=1e-6,
                       lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0, adam_beta1=0.9,
                       adam_beta2=0.999, per_device_train_batch_size=len(pairs), gradient_accumulation_steps=1,
                       max_steps=args.warmup + args.steps, precompute_ref_log_probs=True, use_cpu=True,
                       report_to=[], save_strategy="no", logging_steps=10_000, dataloader_num_workers=0,
                       max_length=None, disable_tqdm=True)
    timer = Timer()
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[timer])
    result = trainer.train()
    return {"times": timer.times, "peak_kib": timer.peak, "start_kib": timer.start_rss,
            "loss": float(result.training_loss)}


def child(args: argparse.Namespace) -> None:
    pairs = json.loads(Path(args.pairs_file).read_text())
    out = (run_ours if args.side == "ours" else run_trl)(args, args.model, pairs)
    print("RESULT " + json.dumps(out))


def launch(side: str, shape: str, model: Path, pairs_file: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", side, "--shape", shape, "--model", str(model), "--pairs-file",
               str(pairs_file), "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
               str(args.threads)]
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{side} on {shape} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def compare_dpo(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            model = Path(tmp) / shape
            save_model(shape, model)
            pairs_file = Path(tmp) / f"{shape}.json"
            pairs = make_pairs(SHAPES[shape]["vocab_size"], args.pairs, args.prompt_len, args.completion_len, 0)
            pairs_file.write_text(json.dumps(pairs))
            results = {side: launch(side, shape, model, pairs_file, args) for side in ("trl", "ours")}
            rows.append((shape, results))
    print(f"\nDPO step on CPU, {args.pairs} pairs of {args.prompt_len}-token prompts and completions of "
          f"{args.completion_len // 2}..{args.completion_len} tokens, {args.threads} thread(s), median of "
          f"{args.steps} steps after {args.warmup} warm-up\n")
    print("| shape | contender | step time (s) | speed-up | peak RSS in steps (MiB) | RSS at start (MiB) | loss |")
    print("|---|---|---|---|---|---|---|")
    for shape, results in rows:
        base = statistics.median(results["trl"]["times"])
        for side, name in (("trl", "TRL 1.16 DPOTrainer"), ("ours", "llm-prefopt dpo (torch engine)")):
            r = results[side]
            median = statistics.median(r["times"])
            print(f"| {shape} | {name} | {median:.3f} | {base / median:.2f}x | {r['peak_kib'] / 1024:.0f} | "
                  f"{r['start_kib'] / 1024:.0f} | {r['loss']:.4f} |")


def compare_ppo_grpo(run: str, args: argparse.Namespace) -> None:
    """Peak RSS of a few PPO steps vs a few GRPO steps: the arena's stages (the same prompts per step,
    samples and tokens for both), on the arena's cold-start model or on ``--checkpoint`` (its reward
    model then the same checkpoint with a fresh value head: the memory is the same)."""
    import tomllib

    recipe = tomllib.loads((Path(__file__).parents[1] / "integration/recipes/prefopt-arena.toml").read_text())
    stages = {s["name"]: s for s in recipe["stages"]}
    sizes = {"ppo": {"prompts_per_step": args.prompts, "samples_per_prompt": args.samples},
             "grpo": {"prompts_per_step": args.prompts, "group_size": args.samples}}
    out = {}
    for name in ("ppo", "grpo"):
        stage = {**stages[name], **sizes[name], "steps": args.steps, "checkpoint_every": 1000,
                 "sampling": {"temperature": 1.0, "max_new_tokens": args.new_tokens}}
        stage["inputs"] = {k: str(Path(run) / v) for k, v in stage["inputs"].items()}
        if args.checkpoint:
            stage["inputs"]["checkpoint"] = args.checkpoint
            if "reward_model" in stage["inputs"]:
                stage["inputs"]["reward_model"] = args.checkpoint
        with tempfile.TemporaryDirectory() as tmp:
            yaml_path = Path(tmp) / "recipe.yaml"  # JSON is valid YAML
            yaml_path.write_text(json.dumps({"name": name, "seed": 0, "settings": {"threads": 1}, "stages": [stage]}))
            proc = subprocess.Popen([sys.executable, "-m", "llm_core.cli", "run", str(yaml_path), "--root",
                                     str(Path(tmp) / "root")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            if status:
                raise RuntimeError(f"{name} failed: {proc.stderr.read().decode()[-2000:]}")
            out[name] = usage.ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak resident set of {args.steps} steps of {args.prompts} prompts x {args.samples} samples x "
          f"{args.new_tokens} new tokens, one process each (MiB): "
          + ", ".join(f"{k} {v:.0f}" for k, v in out.items()) + f"; PPO / GRPO = {out['ppo'] / out['grpo']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--completion-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--ppo-vs-grpo", metavar="RUN", help="a finished prefopt-arena run folder")
    parser.add_argument("--checkpoint", help="--ppo-vs-grpo: a checkpoint to use instead of the arena's cold start")
    parser.add_argument("--prompts", type=int, default=16, help="--ppo-vs-grpo: prompts per step")
    parser.add_argument("--samples", type=int, default=2, help="--ppo-vs-grpo: samples per prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="--ppo-vs-grpo: max new tokens")
    parser.add_argument("--child", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.side = args.child
        child(args)
    elif args.ppo_vs_grpo:
        compare_ppo_grpo(args.ppo_vs_grpo, args)
    else:
        compare_dpo(args)


if __name__ == "__main__":
    main()
