"""``test_time_compute``: accuracy against the number of samples N per problem, per checkpoint.

For every checkpoint input, ``samples`` completions per problem are drawn once and judged by the
``verifier`` (correctness). From them, for each N of ``ns``:

* ``pass@N``: the unbiased estimator of Chen et al. (2021) over the ``samples`` drawn;
* ``majority@N`` (self-consistency, Wang et al. 2023): the most common final answer
  (``llm_eval.passk.extract_answer``; ties go to the answer seen first) of N samples is right,
  averaged over ``subsets`` random N-subsets (one subset at N = samples);
* ``best_of_N`` when a ``selector`` is given: the sample the selector (a verifier or reward model
  from the ``verifiers`` registry, called without the reference) scores highest is right, averaged
  the same way;
* ``tokens@N``: generated tokens per problem for N samples (the token-budget axis).

Writes ``ttc.md`` (a table per checkpoint), ``ttc.json``, ``ttc.png`` (accuracy against N, log scale)
and, with ``token_axis``, ``ttc_tokens.png`` (accuracy against generated tokens).

With ``parallel = true`` each checkpoint is one shard of ``ctx.run_shards``: the stage's executor
runs several at once, each in its own process with its own engine (for CPU engines; a killed stage
resumes with the curves already drawn). The curves are those of one process: sampling and the
subsets are seeded by the stage seed alone.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open, write_json
from llm_core.config import Config
from llm_core.data_io import load_problems
from llm_core.engines import build_rollout_engine
from llm_core.plots import save_figure
from llm_core.refs import VerifierRef
from llm_core.registry import Registries
from llm_core.specs import RolloutSpec, SamplingSpec
from llm_core.stage import StageContext
from llm_core.threads import limit_threads, threads_per_shard
from llm_core.types import Problem, StageResult
from llm_eval.generation import PromptSpec, sample_completions
from llm_eval.judging import JudgeSpec, judge
from llm_eval.passk import extract_answer, pass_at_k


class TtcSampling(SamplingSpec):
    temperature: float = Field(1.0, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    seed: int | None = Field(0, description="None: unseeded")


class TestTimeComputeConfig(Config):
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="the engine that samples")
    verifier: JudgeSpec = Field(default_factory=JudgeSpec, description="correctness")
    selector: VerifierRef | None = Field(None, description="best-of-N scorer (a verifier or reward model), "
                                         "called without the reference; None: no best-of-N curve")
    sampling: TtcSampling = Field(default_factory=TtcSampling)
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    max_problems: int | None = Field(None, ge=1)
    samples: int = Field(64, ge=1, le=1024, description="completions drawn per problem")
    ns: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64], description="curve points N")
    subsets: int = Field(32, ge=1, description="random N-subsets averaged for majority / best-of-N")
    token_axis: bool = Field(True, description="also plot accuracy against generated tokens")
    chunk_prompts: int = Field(16, ge=1)
    threads: int | None = Field(None, ge=1)
    parallel: bool = Field(False, description="draw the checkpoints' curves concurrently, one shard each through "
                           "the stage's executor (each in its own process with its own engine); for CPU engines")

    @model_validator(mode="after")
    def _ns_fit(self) -> TestTimeComputeConfig:
        if not self.ns or min(self.ns) < 1 or max(self.ns) > self.samples:
            raise ValueError(f"ns must lie in 1..samples ({self.samples}), got {self.ns}")
        return self


class TestTimeComputeStage:
    __test__ = False  # not a pytest class

    def __init__(self, config: TestTimeComputeConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        with limit_threads(c.threads):
            problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"))[: c.max_problems]
            checkpoints = {k: v for k, v in ctx.inputs.items() if k != "problems"}
            if not checkpoints:
                raise ValueError(f"stage {ctx.name!r}: name at least one checkpoint input besides 'problems'")
            if c.parallel:
                threads = threads_per_shard(c.threads, ctx.executor, len(checkpoints))
                tasks = [CurveTask(name, c, uri, problems, ctx.seed, threads) for name, uri in checkpoints.items()]
                curves = dict(zip(checkpoints, ctx.run_shards(curve_in_worker, tasks, desc=f"{ctx.name}: checkpoints"),
                                  strict=True))
            else:
                selector = c.selector.build(ctx.registries) if c.selector is not None else None
                curves = {name: checkpoint_curve(c, ctx.registries, uri, problems, ctx.seed, selector)
                          for name, uri in checkpoints.items()}
        write_json(ctx.path("ttc.json"), {"problems": len(problems), "samples": c.samples, "curves": curves})
        with atomic_open(ctx.path("ttc.md"), "wt", encoding="utf-8") as handle:
            handle.write(render_table(curves, len(problems), c))
        artifacts = {"table": ctx.path("ttc.md"), "results": ctx.path("ttc.json")}
        if plot_curves(curves, ctx.path("ttc.png"), x="n"):
            artifacts["plot"] = ctx.path("ttc.png")
        if c.token_axis and plot_curves(curves, ctx.path("ttc_tokens.png"), x="tokens"):
            artifacts["tokens_plot"] = ctx.path("ttc_tokens.png")
        metrics = {f"{m}@{row['n']}/{name}": round(row[m], 4) for name, rows in curves.items() for row in rows
                   for m in ("pass", "majority") if row["n"] in (1, max(c.ns))}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts=artifacts)


@dataclass(frozen=True)
class CurveTask:
    """One checkpoint's curve, drawn in a worker process (picklable)."""

    shard_id: str
    config: TestTimeComputeConfig
    uri: str
    problems: list[Problem]
    seed: int
    threads: int | None


def curve_in_worker(task: CurveTask) -> list[dict[str, float]]:
    from llm_core.plugins import get_registries

    c, registries = task.config, get_registries()
    selector = c.selector.build(registries) if c.selector is not None else None  # one per process
    with limit_threads(task.threads):
        return checkpoint_curve(c, registries, task.uri, task.problems, task.seed, selector)


def checkpoint_curve(c: TestTimeComputeConfig, registries: Registries, uri: str, problems: list[Problem],
                     seed: int, selector: Any) -> list[dict[str, float]]:
    """Sample ``c.samples`` completions per problem from the checkpoint at ``uri``, judge them
    (correctness by ``c.verifier``, best-of-N scores by ``selector`` when not None), and return
    the accuracies at every N of ``c.ns``."""
    engine = build_rollout_engine(c.rollout, registries, checkpoint=uri, seed=seed)
    groups = sample_completions(engine, [p.prompt for p in problems], c.samples, c.sampling, c.prompt,
                                c.chunk_prompts)
    verdicts = iter(judge(c.verifier, registries,
                          [(p.prompt, s.text, p.reference) for p, group in zip(problems, groups, strict=True)
                           for s in group]))
    judged = []
    for problem, group in zip(problems, groups, strict=True):
        passed = [next(verdicts).passed for _ in group]
        scores = ([selector.verify(problem.prompt, s.text, None).score for s in group]
                  if selector is not None else None)
        judged.append((passed, [extract_answer(s.text) for s in group], scores, [s.tokens for s in group]))
    return [curve_point(judged, n, c.subsets, seed) for n in sorted(set(c.ns))]


def curve_point(judged: list[tuple[list[bool], list[str | None], list[float] | None, list[int]]], n: int,
                subsets: int, seed: int) -> dict[str, float]:
    """The accuracies at N = ``n`` over all problems (see the module docstring)."""
    rng = random.Random(seed * 1_000_003 + n)
    pass_n, majority, best, tokens = [], [], [], []
    for passed, answers, scores, lengths in judged:
        pass_n.append(pass_at_k(len(passed), sum(passed), n))
        draws = [list(range(len(passed)))] if n == len(passed) else [rng.sample(range(len(passed)), n)
                                                                     for _ in range(subsets)]
        majority.append(sum(majority_right(passed, answers, d) for d in draws) / len(draws))
        if scores is not None:
            best.append(sum(passed[max(d, key=lambda i: (scores[i], -d.index(i)))] for d in draws) / len(draws))
        tokens.append(sum(lengths) / len(lengths) * n)
    count = len(judged)
    row = {"n": n, "pass": sum(pass_n) / count, "majority": sum(majority) / count, "tokens": sum(tokens) / count}
    if best:
        row["best_of_n"] = sum(best) / count
    return row


def majority_right(passed: list[bool], answers: list[str | None], subset: list[int]) -> bool:
    """Whether the most common final answer of the subset is right (abstentions do not vote)."""
    votes = Counter(answers[i] for i in subset if answers[i] is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(answers[i] for i in subset if answers[i] is not None and votes[answers[i]] == top)
    return any(passed[i] for i in subset if answers[i] == winner)


def render_table(curves: dict[str, list[dict[str, float]]], problems: int, c: TestTimeComputeConfig) -> str:
    best = c.selector is not None
    lines = [f"Test-time compute: {problems} problems, {c.samples} samples each at temperature "
             f"{c.sampling.temperature}; majority and best-of-N averaged over {c.subsets} random subsets", ""]
    for name, rows in curves.items():
        lines += [f"### {name}", "", "| N | pass@N | majority@N |" + (" best-of-N |" if best else "")
                  + " tokens / problem |", "|---|---|---|" + ("---|" if best else "") + "---|"]
        for r in rows:
            lines.append(f"| {r['n']} | {r['pass']:.3f} | {r['majority']:.3f} |"
                         + (f" {r['best_of_n']:.3f} |" if best else "") + f" {r['tokens']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot_curves(curves: dict[str, list[dict[str, float]]], out_uri: str, x: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"pass": "-", "majority": "--", "best_of_n": ":"}
    for k, (name, rows) in enumerate(curves.items()):
        color = f"C{k}"
        for metric, style in styles.items():
            if metric in rows[0]:
                ax.plot([r[x] for r in rows], [r[metric] for r in rows], style, marker="o", color=color,
                        markersize=3, label=f"{name} {metric.replace('_of_n', '-of-N')}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem (N)" if x == "n" else "generated tokens per problem")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("accuracy against test-time compute")
    save_figure(fig, out_uri)
    return True
