"""The ``distill_report`` stage: what each student kept of its teacher, in one table and one plot.

Inputs: ``teacher`` (checkpoint), ``problems`` (held-out prompts), ``pass_at_1`` (the
``results.json`` of an evaluation stage such as ``rlvr_eval``: rows ``{name, passed, n,
pass_at_1, ci_low, ci_high}``), and every student checkpoint by name (``hard = "hard/checkpoint"``,
the same names as in the evaluation). For each student: its parameters, the target tokens it
trained on (its stage's ``metrics.jsonl``), greedy pass@1 with the 95% interval, the share of the
teacher's pass@1 it keeps (with a 95% Katz interval for a ratio of proportions, computed as for
independent samples: on the same problems it is conservative), and the exposure probe
(``llm_distill.probe``). Writes ``report.md``, ``report.json`` and ``report.png``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import fsspec
from pydantic import Field

from llm_core.artifacts import atomic_open, exists, join, read_json, write_json
from llm_core.chat import render_prompt
from llm_core.config import Config
from llm_core.data_io import load_problems
from llm_core.plots import save_figure
from llm_core.specs import EngineSpec, RolloutSpec
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import StageResult
from llm_distill.distill_stage import require_checkpoint
from llm_distill.options import ExposureProbe, PromptSpec
from llm_distill.probe import answers, exposure

log = logging.getLogger("llmt.distill")


class DistillReportConfig(Config):
    teacher_name: str = Field("teacher", description="the teacher's row in pass_at_1")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="scores teacher and students (probe)")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="samples their answers (probe)")
    probe: ExposureProbe | None = Field(default_factory=ExposureProbe, description="null: no exposure probe")
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    threads: int | None = Field(None, ge=1)


def share_interval(student: dict[str, Any], teacher: dict[str, Any], z: float = 1.96) -> tuple[float, float, float]:
    """Student pass@1 / teacher pass@1 and its 95% Katz log interval."""
    xs, ns, xt, nt = student["passed"], student["n"], teacher["passed"], teacher["n"]
    if xt == 0:
        return math.nan, math.nan, math.nan
    share = (xs / ns) / (xt / nt)
    if xs == 0:
        return 0.0, 0.0, math.nan
    se = math.sqrt(1 / xs - 1 / ns + 1 / xt - 1 / nt)
    return share, share * math.exp(-z * se), share * math.exp(z * se)


def llama_parameters(checkpoint: str) -> int:
    """Parameters of an HF Llama checkpoint, from its ``config.json``."""
    c = read_json(join(checkpoint, "config.json"))
    hidden, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = hidden // c["num_attention_heads"] * c.get("num_key_value_heads", c["num_attention_heads"])
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * c["intermediate_size"] + 2 * hidden
    embeddings = vocab * hidden * (1 if c.get("tie_word_embeddings", False) else 2)
    return layers * per_layer + embeddings + hidden


def trained_tokens(checkpoint: str) -> int | None:
    """Target tokens the checkpoint's stage trained on: its ``student_tokens`` counter, or the sum
    of ``tokens`` over its steps when it logged every step (None otherwise: unknown)."""
    uri = join(checkpoint.rstrip("/").rsplit("/", 1)[0], "metrics.jsonl")
    if not exists(uri):
        return None
    by_step: dict[int, dict[str, Any]] = {}
    with fsspec.open(uri, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if isinstance(record.get("step"), int):
                by_step.setdefault(record["step"], {}).update(record)
    counters = [r["student_tokens"] for r in by_step.values() if "student_tokens" in r]
    if counters:
        return int(max(counters))
    logged = sorted(s for s, r in by_step.items() if "tokens" in r)
    if not logged or logged != list(range(1, len(logged) + 1)):
        return None
    return int(sum(by_step[s]["tokens"] for s in logged))


def read_pass_at_1(uri: str, stage: str) -> dict[str, dict[str, Any]]:
    if not exists(uri):
        raise FileNotFoundError(f"stage {stage!r}: inputs.pass_at_1 {uri} does not exist; point it at the "
                                "results.json of an evaluation stage (e.g. 'eval/results.json' of rlvr_eval)")
    rows = read_json(uri).get("rows", [])
    needed = {"name", "passed", "n", "pass_at_1", "ci_low", "ci_high"}
    for i, row in enumerate(rows):
        if not needed <= set(row):
            raise ValueError(f"{uri}: rows[{i}] lacks {sorted(needed - set(row))}; expected an rlvr_eval results.json")
    return {row["name"]: row for row in rows}


class DistillReportStage:
    def __init__(self, config: DistillReportConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        with limit_threads(self.config.threads):
            return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        o = self.config
        rows = read_pass_at_1(ctx.input("pass_at_1"), ctx.name)
        students = {name: uri for name, uri in ctx.inputs.items() if name not in ("teacher", "problems", "pass_at_1")}
        teacher_uri = ctx.input("teacher")
        for name, uri in [("teacher", teacher_uri), *students.items()]:
            require_checkpoint(uri, "teacher" if name == "teacher" else name, ctx.name)
            if (o.teacher_name if name == "teacher" else name) not in rows:
                raise ValueError(f"stage {ctx.name!r}: {ctx.input('pass_at_1')} has no row {name!r}; its rows: "
                                 f"{sorted(rows)} (name the inputs as the evaluation stage did)")
        teacher_row = rows[o.teacher_name]
        probe = self.probe_setup(ctx, teacher_uri) if o.probe is not None else None
        table = [self.row(ctx, "teacher", teacher_uri, teacher_row, teacher_row, None)]
        table += [self.row(ctx, name, uri, rows[name], teacher_row, probe) for name, uri in students.items()]
        text = render(table, teacher_row, o)
        print(text)
        with atomic_open(ctx.path("report.md"), "wt", encoding="utf-8") as handle:
            handle.write(text + "\n")
        write_json(ctx.path("report.json"), {"rows": table})
        plotted = plot(table, ctx.path("report.png"))
        metrics = {f"share_kept/{r['name']}": round(r["share"], 4) for r in table[1:] if math.isfinite(r["share"])}
        ctx.log_metrics(metrics)
        artifacts = {"table": ctx.path("report.md"), "results": ctx.path("report.json")}
        if plotted:
            artifacts["plot"] = ctx.path("report.png")
        return StageResult(metrics=metrics, artifacts=artifacts)

    def probe_setup(self, ctx: StageContext, teacher_uri: str) -> dict[str, Any]:
        """The teacher's engine, the probe prompts (rendered in its template) and its answers."""
        o = self.config
        teacher = ctx.train_engine(o.engine, checkpoint=teacher_uri)
        problems = load_problems(ctx.input("problems"), ctx.path("rejects.jsonl"),
                                 need_reference=False)[: o.probe.prompts]
        prompts = [render_prompt(teacher.tokenizer, p.prompt, system_prompt=o.prompt.system_prompt,
                                 response_prefix=o.prompt.response_prefix) for p in problems]
        sampling = o.probe.sampling.with_seed(ctx.seed)
        teacher_answers = answers(ctx.rollout_engine(o.rollout, checkpoint=teacher_uri), prompts, sampling)
        return {"teacher": teacher, "prompts": prompts, "answers": teacher_answers, "sampling": sampling}

    def row(self, ctx: StageContext, name: str, uri: str, scores: dict[str, Any], teacher_scores: dict[str, Any],
            probe: dict[str, Any] | None) -> dict[str, Any]:
        is_teacher = scores is teacher_scores
        share, low, high = (1.0, math.nan, math.nan) if is_teacher else share_interval(scores, teacher_scores)
        row = {"name": name, "checkpoint": uri, "parameters": llama_parameters(uri),
               "trained_tokens": None if is_teacher else trained_tokens(uri), "pass_at_1": scores["pass_at_1"],
               "ci_low": scores["ci_low"], "ci_high": scores["ci_high"], "n": scores["n"],
               "share": share, "share_low": low, "share_high": high}
        if probe is not None:
            student = ctx.train_engine(self.config.engine, checkpoint=uri)
            rollout = ctx.rollout_engine(self.config.rollout, checkpoint=uri)
            row.update(exposure(probe["teacher"], student, rollout, probe["prompts"], probe["answers"],
                                probe["sampling"]))
            log.info("%s: exposure gap %.3f (KL %.3f on its samples, %.3f on the teacher's)", name,
                     row["exposure_gap"], row["kl_student_samples"], row["kl_teacher_samples"])
        return row


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


def render(table: list[dict[str, Any]], teacher: dict[str, Any], o: DistillReportConfig) -> str:
    probe = o.probe is not None
    header = (f"held-out greedy pass@1 (n={teacher['n']}, 95% Wilson interval); share of the teacher's pass@1 "
              "kept (95% Katz interval)")
    if probe:
        header += ("; KL(teacher || student) per answer token on the student's own samples and on the "
                   "teacher's, and their gap (exposure bias)")
    lines = [header, "",
             "| model | parameters | trained tokens | pass@1 | 95% interval | share kept | 95% interval |"
             + (" KL own samples | KL teacher samples | exposure gap |" if probe else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if probe else "")]
    for r in table:
        line = (f"| {r['name']} | {_fmt(r['parameters'])} | {_fmt(r['trained_tokens'])} | {_fmt(r['pass_at_1'])} "
                f"| [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {_fmt(r['share'])} "
                f"| [{_fmt(r['share_low'])}, {_fmt(r['share_high'])}] |")
        if probe:
            line += (f" {_fmt(r.get('kl_student_samples'))} | {_fmt(r.get('kl_teacher_samples'))} "
                     f"| {_fmt(r.get('exposure_gap'))} |")
        lines.append(line)
    return "\n".join(lines)


def plot(table: list[dict[str, Any]], out_uri: str) -> bool:
    """Pass@1 with its interval per model, the teacher's as a line; and the share each student keeps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("report.png not drawn: matplotlib is not installed")
        return False
    students = table[1:]
    names = [r["name"] for r in students]
    fig, (ax_pass, ax_share) = plt.subplots(1, 2, figsize=(10, 3.8))
    values = [r["pass_at_1"] for r in students]
    errors = [[v - r["ci_low"] for v, r in zip(values, students, strict=True)],
              [r["ci_high"] - v for v, r in zip(values, students, strict=True)]]
    ax_pass.bar(names, values, yerr=errors, capsize=4, color="tab:blue")
    teacher = table[0]
    ax_pass.axhline(teacher["pass_at_1"], color="tab:red", label=f"teacher {teacher['pass_at_1']:.3f}")
    ax_pass.axhspan(teacher["ci_low"], teacher["ci_high"], color="tab:red", alpha=0.15)
    ax_pass.set_ylabel("held-out greedy pass@1")
    ax_pass.legend()
    shares = [r["share"] if math.isfinite(r["share"]) else 0.0 for r in students]
    share_errors = [[max(0.0, s - r["share_low"]) if math.isfinite(r["share_low"]) else 0.0
                     for s, r in zip(shares, students, strict=True)],
                    [max(0.0, r["share_high"] - s) if math.isfinite(r["share_high"]) else 0.0
                     for s, r in zip(shares, students, strict=True)]]
    ax_share.bar(names, shares, yerr=share_errors, capsize=4, color="tab:green")
    ax_share.axhline(1.0, color="gray", linestyle="--")
    ax_share.set_ylabel("share of the teacher's pass@1 kept")
    for ax in (ax_pass, ax_share):
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="x", rotation=20)
    save_figure(fig, out_uri)
    return True
