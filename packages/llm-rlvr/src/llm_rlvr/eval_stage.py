"""The ``rlvr_eval`` stage: greedy pass@1 of several checkpoints on held-out problems, one table.

Inputs: ``problems`` (held-out JSONL) and any number of named checkpoints (``sft =
"sft/checkpoint"``...), evaluated in the order given. Writes ``pass_at_1.md`` / ``results.json``
(pass@1 with a 95% Wilson interval per checkpoint, and whether each ``compare`` pair differs
beyond the intervals), the share of responses in the expected format (R1's ``<think> ...
</think> <answer> ... </answer>``, greedy and sampled: what rejection-sampling SFT and a format
reward aim at, which pass@1 alone does not show) and ``curves.png``: reward and pass@1 over the steps of every RL stage
among the inputs, read from their ``metrics.jsonl``.

With ``parallel = true`` each checkpoint is one shard of ``ctx.run_shards``: the stage's executor
scores several at once, each in its own process with its own engine and verifier pool (on 2 CPU
cores, two checkpoints at one torch thread each instead of one after the other), and a killed
stage resumes with the checkpoints already scored. The rows are the same as in one process: every
checkpoint's sampling is seeded by the stage seed alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import fsspec
from pydantic import Field

from llm_core.artifacts import atomic_open, exists, join, write_json
from llm_core.data_io import load_problems
from llm_core.engines import build_rollout_engine
from llm_core.plots import save_figure
from llm_core.registry import Registries
from llm_core.specs import SamplingSpec
from llm_core.stage import StageContext
from llm_core.stats import mean_interval, wilson_interval
from llm_core.threads import limit_threads, threads_per_shard
from llm_core.types import Problem, StageResult
from llm_rlvr.options import RolloutOptions
from llm_rlvr.rollout import Group, completion_text, sample_and_verify
from llm_rlvr.verifiers.combine import FormatConfig, FormatVerifier

log = logging.getLogger("llmt.rlvr")


class RlvrEvalConfig(RolloutOptions):
    max_problems: int | None = Field(None, ge=1, description="evaluate the first N problems (default: all)")
    compare: list[tuple[str, str]] = Field(default_factory=list, description="pairs (baseline, candidate) of "
                                           "input names; reports whether candidate beats baseline "
                                           "beyond both 95% intervals")
    sampled_temperature: float | None = Field(None, gt=0, description="also report DeepSeek-R1's pass@1: "
                                              "the pass rate of samples at this temperature, averaged "
                                              "over samples_per_problem per problem")
    samples_per_problem: int = Field(4, ge=1)
    format: FormatConfig | None = Field(default_factory=FormatConfig, description="also report the share of "
                                        "greedy (and sampled) responses matching this format; default R1's "
                                        "<think>/<answer>; none: not reported")
    parallel: bool = Field(False, description="score the checkpoints concurrently, one shard each through the "
                           "stage's executor (each in its own process, with its own engine and verifier pool; "
                           "a killed stage resumes with those done); for CPU engines")


class RlvrEvalStage:
    def __init__(self, config: RlvrEvalConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        from llm_rlvr.pool import VerifierPool

        o = self.config
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"))[: o.max_problems]
        checkpoints = {name: uri for name, uri in ctx.inputs.items() if name != "problems"}
        for a, b in o.compare:
            for name in (a, b):
                if name not in checkpoints:
                    raise ValueError(f"compare names {name!r}, which is not an input; inputs: {sorted(checkpoints)}")
        if o.parallel:
            threads = threads_per_shard(o.threads, ctx.executor, len(checkpoints))
            tasks = [CheckpointTask(name, o, name, uri, problems, ctx.seed, threads)
                     for name, uri in checkpoints.items()]
            rows = ctx.run_shards(score_in_worker, tasks, desc=f"{ctx.name}: checkpoints")
        else:
            with VerifierPool(o.verifier, workers=o.verifier.workers, timeout_s=o.verifier.timeout_s) as pool:
                rows = [score_checkpoint(o, ctx.registries, pool, problems, name, uri, ctx.seed)
                        for name, uri in checkpoints.items()]
        metric_names = ["greedy"] + (["sampled"] if o.sampled_temperature else [])
        comparisons = [compare(rows, a, b, metric) for metric in metric_names for a, b in o.compare]
        table = render_table(rows, comparisons, o)
        print(table)
        with atomic_open(ctx.path("pass_at_1.md"), "wt", encoding="utf-8") as handle:
            handle.write(table + "\n")
        write_json(ctx.path("results.json"), {"rows": rows, "comparisons": comparisons})
        plotted = plot_curves(checkpoints, ctx.path("curves.png"))
        metrics = {f"pass_at_1/{r['name']}": round(r["pass_at_1"], 4) for r in rows}
        for key in ("sampled_pass_at_1", "format", "sampled_format"):
            metrics.update({f"{key}/{r['name']}": round(r[key], 4) for r in rows if key in r})
        metrics.update({f"beats/{c['metric']}/{c['candidate']}>{c['baseline']}": c["beyond_intervals"]
                        for c in comparisons})
        ctx.log_metrics(metrics)
        artifacts = {"table": ctx.path("pass_at_1.md"), "results": ctx.path("results.json")}
        if plotted:
            artifacts["curves"] = ctx.path("curves.png")
        return StageResult(metrics=metrics, artifacts=artifacts)


@dataclass(frozen=True)
class CheckpointTask:
    """One checkpoint to score in a worker process (picklable)."""

    shard_id: str
    config: RlvrEvalConfig
    name: str
    uri: str
    problems: list[Problem]
    seed: int
    threads: int | None


def score_in_worker(task: CheckpointTask) -> dict[str, Any]:
    from llm_core.plugins import get_registries
    from llm_rlvr.pool import VerifierPool

    o = task.config
    with limit_threads(task.threads), VerifierPool(o.verifier, workers=o.verifier.workers,
                                                   timeout_s=o.verifier.timeout_s) as pool:
        return score_checkpoint(o, get_registries(), pool, task.problems, task.name, task.uri, task.seed)


def score_checkpoint(o: RlvrEvalConfig, registries: Registries, pool: Any, problems: list[Problem], name: str,
                     uri: str, seed: int) -> dict[str, Any]:
    """Greedy pass@1 (Wilson interval) and, if asked, sampled pass@1 (interval over problems)."""
    engine = build_rollout_engine(o.rollout_spec(), registries, checkpoint=uri, seed=seed)
    greedy = SamplingSpec(max_new_tokens=o.sampling.max_new_tokens, temperature=0.0)
    groups, _ = sample_and_verify(engine, pool, problems, 1, greedy, o.prompt, o.chunk_prompts)
    passed = sum(g.verdicts[0].passed for g in groups)
    low, high = wilson_interval(passed, len(groups))
    row = {"name": name, "checkpoint": uri, "passed": passed, "n": len(groups),
           "pass_at_1": passed / len(groups), "ci_low": low, "ci_high": high,
           "response_tokens": sum(len(g.samples[0].token_ids) for g in groups) / len(groups)}
    log.info("%s: greedy pass@1 %.3f [%.3f, %.3f]", name, row["pass_at_1"], low, high)
    if o.format is not None:
        well_formed = int(sum(format_shares(engine.tokenizer, groups, o)))  # one sample each: 0 or 1
        f_low, f_high = wilson_interval(well_formed, len(groups))
        row.update(format=well_formed / len(groups), format_ci_low=f_low, format_ci_high=f_high)
    if o.sampled_temperature:
        sampling = o.sampling.model_copy(update={"temperature": o.sampled_temperature, "seed": seed})
        groups, _ = sample_and_verify(engine, pool, problems, o.samples_per_problem, sampling, o.prompt,
                                      o.chunk_prompts)
        per_problem = [sum(v.passed for v in g.verdicts) / len(g.verdicts) for g in groups]
        s_low, s_high = mean_interval(per_problem)
        row.update(sampled_pass_at_1=sum(per_problem) / len(per_problem), sampled_ci_low=s_low,
                   sampled_ci_high=s_high)
        if o.format is not None:
            shares = format_shares(engine.tokenizer, groups, o)
            sf_low, sf_high = mean_interval(shares)
            row.update(sampled_format=sum(shares) / len(shares), sampled_format_ci_low=sf_low,
                       sampled_format_ci_high=sf_high)
        log.info("%s: sampled pass@1 %.3f [%.3f, %.3f]", name, row["sampled_pass_at_1"], s_low, s_high)
    return row


def format_shares(tokenizer: Any, groups: list[Group], o: RlvrEvalConfig) -> list[float]:
    """Per problem, the share of its samples in ``o.format`` (scored as the verifier sees them:
    the response prefix, then the text without the stop token). Cheap: a regex, in this process."""
    verifier = FormatVerifier(o.format)
    prefix = o.prompt.response_prefix
    return [sum(verifier.verify(g.problem.prompt, prefix + completion_text(tokenizer, s), None).passed
                for s in g.samples) / len(g.samples) for g in groups]


def compare(rows: list[dict[str, Any]], baseline: str, candidate: str, metric: str) -> dict[str, Any]:
    by_name = {r["name"]: r for r in rows}
    prefix = "" if metric == "greedy" else "sampled_"
    a, b = by_name[baseline], by_name[candidate]
    return {"metric": metric, "baseline": baseline, "candidate": candidate,
            "delta": b[f"{prefix}pass_at_1"] - a[f"{prefix}pass_at_1"],
            "beyond_intervals": b[f"{prefix}ci_low"] > a[f"{prefix}ci_high"]}


def render_table(rows: list[dict[str, Any]], comparisons: list[dict[str, Any]], o: RlvrEvalConfig) -> str:
    sampled = o.sampled_temperature is not None
    header = f"held-out pass@1 (n={rows[0]['n'] if rows else 0}; greedy with a 95% Wilson interval"
    header += (f"; sampled: mean over {o.samples_per_problem} samples at temperature {o.sampled_temperature}, "
               "95% interval over problems)" if sampled else ")")
    if o.format is not None:
        header += "; format: share of responses matching the expected format, 95% interval"
    columns = ["stage", "greedy pass@1", "95% interval", "solved", "response tokens"]
    columns += ["sampled pass@1", "95% interval"] if sampled else []
    columns += (["format, greedy", "format, sampled"] if sampled else ["format, greedy"]) if o.format else []
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [r["name"], f"{r['pass_at_1']:.3f}", f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                 f"{r['passed']}/{r['n']}", f"{r['response_tokens']:.1f}"]
        if sampled:
            cells += [f"{r['sampled_pass_at_1']:.3f}", f"[{r['sampled_ci_low']:.3f}, {r['sampled_ci_high']:.3f}]"]
        if o.format is not None:
            cells.append(_with_interval(r, "format"))
            if sampled:
                cells.append(_with_interval(r, "sampled_format"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for c in comparisons:
        verdict = "beyond the intervals" if c["beyond_intervals"] else "NOT beyond the intervals"
        lines.append(f"{c['candidate']} vs {c['baseline']} ({c['metric']}): {c['delta']:+.3f}, {verdict}")
    return "\n".join(lines)


def _with_interval(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.3f} [{row[key + '_ci_low']:.3f}, {row[key + '_ci_high']:.3f}]"


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
    save_figure(fig, out_uri)
    return True
