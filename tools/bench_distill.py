"""Benchmark: one distillation step on CPU, llm-distill against TRL's ``GKDTrainer``, side by side in one run.

Both sides get the same teacher and student (the tiny-r1 teacher's shape and a student of about a
quarter of its parameters; random weights made once by llm-torch, exported as HF folders and loaded
by transformers for TRL), the same tokenizer and chats, the same batch size, loss (generalized JSD,
beta 0.5, the whole vocabulary) and optimizer (AdamW, lr 1e-4, no weight decay, clipping at 1).
Two kinds of step, as GKD mixes them:

* ``off_policy`` (lambda = 0): the teacher scores a batch of the data set's chats, the student trains on them;
* ``on_policy`` (lambda = 1): the student first samples its own answers (64 new tokens at temperature 1).

llm-distill's step is what its ``distill`` stage runs in the one training loop: ``plan_step``
(sampling, padding, the teacher's ``top_logprobs``) and ``TorchEngine.train_step``, timed by the
loop (``step_time_s``). TRL's is ``GKDTrainer.training_step`` plus the optimizer step, timed from
``on_step_begin`` to ``on_step_end`` (its data collation, which runs before, is left out; the table
also shows its wall time per step with it). Rounds alternate the two sides so machine noise hits
both alike; a round's first ``--warmup`` steps are dropped; the table shows medians.

    uv run python tools/bench_distill.py                          # 3 rounds x 8 steps of each kind
    uv run python tools/bench_distill.py --rounds 1 --steps 2 --warmup 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

TEACHER = dict(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, num_kv_heads=2)
STUDENT = dict(hidden_size=64, intermediate_size=192, num_layers=4, num_heads=4, num_kv_heads=2)
NAMES = ["Ada", "Ben", "Eli", "Goro", "Hana", "Ines", "Omar", "Zoe"]
THINGS = ["apples", "coins", "stickers", "marbles", "books"]


def chats(count: int, seed: int = 0) -> list[dict]:
    """Arithmetic word problems with reasoning traces, in the tiny-r1 format (about 60-90 tokens)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        a, b, c = rng.randint(2, 30), rng.randint(2, 30), rng.randint(2, 9)
        name, thing = rng.choice(NAMES), rng.choice(THINGS)
        prompt = f"{name} has {a} {thing}, finds {b} more, and then the pile is made {c} times bigger. How many?"
        answer = f"<think>\n{a} + {b} = {a + b}\n{a + b} * {c} = {(a + b) * c}\n</think><answer>{(a + b) * c}</answer>"
        out.append({"id": f"chat-{i}", "messages": [{"role": "user", "content": prompt},
                                                     {"role": "assistant", "content": answer}]})
    return out


def build_models(folder: Path) -> tuple[str, str]:
    """A tokenizer trained on the chats, and a teacher and a student with random weights, as HF folders."""
    from llm_core.chat import render
    from llm_core.engines import EngineRequest
    from llm_core.specs import ModelShape
    from llm_torch.engine import TorchEngine
    from llm_torch.tokenizer import train_bpe

    texts = [render("{% for m in messages %}{{ m['content'] }}\n{% endfor %}", c["messages"]) for c in chats(2000)]
    tokenizer = folder / "tokenizer"
    train_bpe(texts, vocab_size=512).with_chat_template("chatml").save(str(tokenizer))
    paths = []
    for name, shape, seed in (("teacher", TEACHER, 0), ("student", STUDENT, 1)):
        engine = TorchEngine.from_request(EngineRequest(model=ModelShape(**shape), tokenizer=str(tokenizer),
                                                        max_seq_len=256, seed=seed))
        engine.export_hf(str(folder / name))
        paths.append(str(folder / name))
    return paths[0], paths[1]


class Context:
    """What ``DistillStage.plan_step`` reads of a stage context (the seed)."""

    seed = 0


def ours(teacher_dir: str, student_dir: str, data: list[dict], batch: int, fraction: float, steps: int):
    """Per-step seconds of llm-distill's step (plan_step + train_step through the one training loop)."""
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec
    from llm_core.training import Trainer
    from llm_distill.distill_stage import DistillConfig, DistillStage, Parts
    from llm_distill.examples import parse_example

    registries = get_registries()
    config = DistillConfig(mode="on_policy", loss={"name": "jsd", "options": {"beta": 0.5}}, batch_size=batch,
                           on_policy={"student_fraction": fraction, "sampling": {"max_new_tokens": 64}},
                           optimizer={"lr": 1e-4, "weight_decay": 0.0, "betas": (0.9, 0.999),
                                      "schedule": "constant"}, epochs=None, steps=steps)
    from llm_core.engines import build_train_engine

    teacher = build_train_engine(EngineSpec(), registries, checkpoint=teacher_dir, max_seq_len=256)
    student = build_train_engine(EngineSpec(), registries, checkpoint=student_dir, max_seq_len=256,
                                 optimizer=config.optimizer, total_steps=steps)
    examples = [parse_example(c, teacher.tokenizer, 192) for c in data]
    stage = DistillStage(config)
    parts = Parts(student, teacher, student, examples, None)
    trainer = Trainer(student, lambda step: stage.plan_step(Context(), parts, step),
                      config.loss.build(registries), steps, log_every=10**9)
    trainer.run()
    return [r["step_time_s"] for r in trainer.history], [r["completion_tokens"] for r in trainer.history]


def theirs(teacher_dir: str, student_dir: str, data: list[dict], batch: int, fraction: float, steps: int,
           out_dir: str):
    """Per-step seconds of TRL's GKDTrainer (on_step_begin -> on_step_end), and wall seconds per step."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from llm_core.chat import CHATML

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    tokenizer.chat_template = CHATML
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
    args = GKDConfig(output_dir=out_dir, per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-4,
                     lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0, lmbda=fraction, beta=0.5,
                     temperature=1.0, max_new_tokens=64, max_length=256, logging_steps=10**9, save_strategy="no",
                     report_to="none", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.started = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.started)

    timer = StepTimer()
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=args, train_dataset=Dataset.from_list(data),
                         processing_class=tokenizer, callbacks=[timer])
    started = time.perf_counter()
    trainer.train()
    return timer.times, (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="measured steps per round and kind")
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of each round")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=["off_policy", "on_policy"], choices=["off_policy", "on_policy"])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    data = chats(args.batch * total, seed=1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        teacher_dir, student_dir = build_models(Path(tmp))
        for kind in args.kinds:
            fraction = 0.0 if kind == "off_policy" else 1.0
            mine, trl, trl_wall, lengths = [], [], [], []
            for _ in range(args.rounds):
                times, completion = ours(teacher_dir, student_dir, data, args.batch, fraction, total)
                mine += times[args.warmup:]
                lengths += completion[args.warmup:]
                times, wall = theirs(teacher_dir, student_dir, data, args.batch, fraction, total, f"{tmp}/trl")
                trl += times[args.warmup:]
                trl_wall.append(wall)
            row = {"llm_distill_s": statistics.median(mine), "trl_s": statistics.median(trl),
                   "trl_wall_s": statistics.median(trl_wall), "completion_tokens": statistics.mean(lengths)}
            row["speedup"] = row["trl_s"] / row["llm_distill_s"]
            results[kind] = row
    print(f"distillation step on CPU ({args.threads} threads), batch {args.batch}, teacher {TEACHER}, "
          f"student {STUDENT}, vocab 512; medians of {args.rounds} rounds x {args.steps} steps")
    print("| step | llm-distill s/step | TRL GKDTrainer s/step | TRL wall s/step (with collation) | speedup |")
    print("|---|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['llm_distill_s']:.3f} | {r['trl_s']:.3f} | {r['trl_wall_s']:.3f} | "
              f"{r['speedup']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
