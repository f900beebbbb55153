"""The ``rlvr_eval`` stage: greedy pass@1 of several checkpoints on held-out problems, one table.

Inputs: ``problems`` (held-out JSONL) and any number of named checkpoints (``sft =
"sft/checkpoint"``...), evaluated in the order given. Writes ``pass_at_1.md`` / ``results.json``
(pass@1 with a 95% Wilson interval per checkpoint, and whether each ``compare`` pair differs
beyond the intervals) and ``curves.png``: reward and pass@1 over the steps of every RL stage
among the inputs, read from their ``metrics.jsonl``.
"""

from __future__ import annotations

import io
import json
import logging
import math
from typing import Any

import fsspec
from pydantic import Field

from llm_core.artifacts import atomic_open, exists, join, write_json
from llm_core.stage import StageContext
from llm_core.types import SamplingParams, StageResult
from llm_rlvr.grpo_stage import RolloutOptions
from llm_rlvr.rollout import load_problems, sample_and_verify

log = logging.getLogger("llmt.rlvr")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well-behaved near 0 and 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class RlvrEvalConfig(RolloutOptions):
    max_problems: int | None = Field(None, ge=1, description="evaluate the first N problems (default: all)")
    compare: list[tuple[str, str]] = Field(default_factory=list, description="pairs (baseline, candidate) of "
                                           "input names; reports whether candidate beats baseline "
                                           "beyond both 95% intervals")
    verifier_workers: int = 2


class RlvrEvalStage:
    def __init__(self, **options: Any):
        self.o = RlvrEvalConfig(**options)

    def run(self, ctx: StageContext) -> StageResult:
        from llm_rlvr.pool import VerifierPool

        o = self.o
        if o.threads:
            import torch

            torch.set_num_threads(o.threads)
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"))[: o.max_problems]
        checkpoints = {name: uri for name, uri in ctx.inputs.items() if name != "problems"}
        for a, b in o.compare:
            for name in (a, b):
                if name not in checkpoints:
                    raise ValueError(f"compare names {name!r}, which is not an input; inputs: {sorted(checkpoints)}")
        rows = []
        greedy = SamplingParams(max_new_tokens=o.max_new_tokens, temperature=0.0)
        with VerifierPool(o.verifier, o.verifier_options, workers=o.verifier_workers,
                          timeout_s=o.verifier_timeout_s) as pool:
            for name, uri in checkpoints.items():
                engine = ctx.registries.rollout_engines.build(o.engine, {"checkpoint": uri, "trainable": False,
                                                                         "device": o.device})
                groups, _ = sample_and_verify(engine, pool, problems, 1, greedy, response_prefix=o.response_prefix,
                                              system_prompt=o.system_prompt, prompt_format=o.prompt_format,
                                              chunk_prompts=o.chunk_prompts)
                passed = sum(g.verdicts[0].passed for g in groups)
                low, high = wilson_interval(passed, len(groups))
                rows.append({"name": name, "checkpoint": uri, "passed": passed, "n": len(groups),
                             "pass_at_1": passed / len(groups), "ci_low": low, "ci_high": high})
                log.info("%s: pass@1 %.3f [%.3f, %.3f]", name, passed / len(groups), low, high)
        by_name = {r["name"]: r for r in rows}
        comparisons = [{"baseline": a, "candidate": b, "delta": by_name[b]["pass_at_1"] - by_name[a]["pass_at_1"],
                        "beyond_intervals": by_name[b]["ci_low"] > by_name[a]["ci_high"]} for a, b in o.compare]
        table = render_table(rows, comparisons)
        print(table)
        with atomic_open(ctx.path("pass_at_1.md"), "wt", encoding="utf-8") as handle:
            handle.write(table + "\n")
        write_json(ctx.path("results.json"), {"rows": rows, "comparisons": comparisons})
        plotted = plot_curves(checkpoints, ctx.path("curves.png"))
        metrics = {f"pass_at_1/{r['name']}": round(r["pass_at_1"], 4) for r in rows}
        metrics.update({f"beats/{c['candidate']}>{c['baseline']}": c["beyond_intervals"] for c in comparisons})
        ctx.log_metrics(metrics)
        artifacts = {"table": ctx.path("pass_at_1.md"), "results": ctx.path("results.json")}
        if plotted:
            artifacts["curves"] = ctx.path("curves.png")
        return StageResult(metrics=metrics, artifacts=artifacts)


def render_table(rows: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> str:
    lines = [f"held-out pass@1 (greedy, n={rows[0]['n'] if rows else 0}, 95% Wilson interval)", "",
             "| stage | pass@1 | 95% interval | solved |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['pass_at_1']:.3f} | [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | "
                     f"{r['passed']}/{r['n']} |")
    for c in comparisons:
        verdict = "beyond the intervals" if c["beyond_intervals"] else "NOT beyond the intervals"
        lines.append(f"\n{c['candidate']} vs {c['baseline']}: {c['delta']:+.3f}, {verdict}")
    return "\n".join(lines)


def read_stage_metrics(checkpoint_uri: str) -> list[dict[str, Any]]:
    """``metrics.jsonl`` of the stage that wrote a checkpoint (its parent folder), last record per step."""
    uri = join(checkpoint_uri.rstrip("/").rsplit("/", 1)[0], "metrics.jsonl")
    if not exists(uri):
        return []
    by_step: dict[int, dict[str, Any]] = {}
    with fsspec.open(uri, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if "step" in record:
                by_step[record["step"]] = {**by_step.get(record["step"], {}), **record}
    return [by_step[s] for s in sorted(by_step)]


def plot_curves(checkpoints: dict[str, str], out_uri: str) -> bool:
    """Reward mean and eval pass@1 over the RL steps of every input stage that logged them."""
    curves = {name: read_stage_metrics(uri) for name, uri in checkpoints.items()}
    curves = {n: m for n, m in curves.items() if any("reward_mean" in r for r in m)}
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_reward, ax_pass) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    offset = 0
    for name, records in curves.items():
        steps = [offset + r["step"] for r in records if "reward_mean" in r]
        ax_reward.plot(steps, [r["reward_mean"] for r in records if "reward_mean" in r], label=name)
        evals = [(offset + r["step"], r["eval_pass_at_1"]) for r in records if "eval_pass_at_1" in r]
        if evals:
            ax_pass.plot(*zip(*evals, strict=True), marker="o", label=name)
        offset = max([offset, *steps])
    ax_reward.set_ylabel("reward (mean)")
    ax_pass.set_ylabel("held-out pass@1")
    ax_pass.set_xlabel("RL step (stages back to back)")
    for ax in (ax_reward, ax_pass):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    with atomic_open(out_uri, "wb") as handle:
        handle.write(buffer.getvalue())
    return True
