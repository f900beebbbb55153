"""tiny-r1's GRPO stage and eval on the cold start of an earlier tiny-r1 run, with vLLM or embedded rollouts.

The two rollout engines compared from one cold-start checkpoint, without re-running data, pretrain and
cold start: the committed recipe's ``grpo`` and ``eval`` stages (eval limited to the cold start and
GRPO models) with absolute inputs taken from ``BASE`` (a finished ``llmt run`` of tiny-r1).

    uv run python tools/tiny_r1_vllm_grpo.py runs/tiny-r1 runs/tiny-r1-grpo-vllm
    uv run python tools/tiny_r1_vllm_grpo.py runs/tiny-r1 runs/tiny-r1-grpo-embedded --rollout torch

Each prints its ``eval/pass_at_1.md``; ``ROOT/grpo/metrics.jsonl`` has the per-step log-prob gap.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

RECIPE = Path(__file__).parents[1] / "integration" / "recipes" / "tiny-r1.toml"


def stages(base: Path, rollout: str) -> list[dict]:
    from llm_core.config import apply_overrides, load_recipe_file

    overrides = ['stages.grpo.rollout={name = "vllm", options = {threads = 1}}'] if rollout == "vllm" else []
    by_name = {s["name"]: s for s in apply_overrides(load_recipe_file(RECIPE), overrides)["stages"]}
    grpo, evaluation = by_name["grpo"], by_name["eval"]
    grpo["inputs"] = {"checkpoint": str(base / "cold_start/checkpoint"), "problems": str(base / "data/train"),
                      "heldout": str(base / "data/heldout")}
    evaluation["inputs"] = {"problems": str(base / "data/heldout"), "cold_start": str(base / "cold_start/checkpoint"),
                            "grpo": "grpo/checkpoint"}
    evaluation["compare"] = [["cold_start", "grpo"]]
    return [grpo, evaluation]


def main() -> None:
    from llm_core.config import apply_overrides, load_recipe_file, validate_recipe
    from llm_core.plugins import get_host
    from llm_core.runner import PipelineRunner

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", type=Path, help="a finished tiny-r1 run (its data and cold_start are read)")
    parser.add_argument("root", help="the new run folder")
    parser.add_argument("--rollout", choices=["vllm", "torch"], default="vllm")
    args = parser.parse_args()
    data = apply_overrides(load_recipe_file(RECIPE), [])
    data["stages"] = stages(args.base.resolve(), args.rollout)
    host = get_host()
    start = time.perf_counter()
    PipelineRunner(validate_recipe(data, host.registries, host), args.root, host).run()
    print((Path(args.root) / "eval" / "pass_at_1.md").read_text())
    print(f"grpo + eval: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
