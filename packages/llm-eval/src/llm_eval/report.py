"""``eval_report``: one self-contained HTML page per run, comparing its checkpoints and stages.

It reads what the evaluation stages wrote in their folders (every input is a stage folder; with
no inputs, every stage of the run): pass@1 tables with intervals (``rlvr_eval``'s and
``evaluate``'s ``results.json``), test-time-compute curves (``ttc.json``), long-context probes
(``probes.json``), contamination (``contamination_report``'s ``report.json``, and the
``decontamination.json`` a gated training stage leaves: how many records were checked against
which eval sets, and how many dropped), plus each stage's training curves. Every PNG is inlined
(base64), so ``report.html`` opens offline, anywhere.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

import fsspec
from pydantic import Field

from llm_core.artifacts import atomic_open, exists, join, read_json
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em}.note{color:#666;font-size:.9em}"""


class EvalReportConfig(Config):
    title: str = Field("Evaluation report", description="page title")
    curves: bool = Field(True, description="include each stage's training curves.png")


class EvalReportStage:
    def __init__(self, config: EvalReportConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        stages = dict(ctx.inputs) or {s: ctx.store.stage_dir(s) for s in ctx.store.stages_on_disk() if s != ctx.name}
        sections = [self.overview(stages), pass_at_1_section(stages), ttc_section(stages),
                    contamination_section(stages), probes_section(stages)]
        if self.config.curves:
            sections.append(curves_section(stages))
        body = "\n".join(s for s in sections if s)
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(self.config.title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{_e(self.config.title)}</h1>{body}</body></html>")
        with atomic_open(ctx.path("report.html"), "wt", encoding="utf-8") as handle:
            handle.write(page)
        ctx.log_metrics({"stages": len(stages), "bytes": len(page)})
        return StageResult(metrics={"stages": len(stages)}, artifacts={"report": ctx.path("report.html")})

    def overview(self, stages: dict[str, str]) -> str:
        rows = []
        for name, uri in stages.items():
            manifest = _json(join(uri, "manifest.json")) or {}
            rows.append([name, manifest.get("kind", "?"), manifest.get("status", "?"),
                         f"{manifest.get('wall_time_s', 0):.1f}"])
        return "<h2>Stages</h2>" + table(["stage", "kind", "status", "wall s"], rows)


def pass_at_1_section(stages: dict[str, str]) -> str:
    parts = []
    for name, uri in stages.items():
        results = _json(join(uri, "results.json"))
        if not results or not isinstance(results, dict) or "rows" not in results:
            continue
        rows = results["rows"]
        sampled = any("sampled_pass_at_1" in r for r in rows)
        header = ["checkpoint", "pass@1", "95% interval", "n"] + (["sampled pass@1", "95% interval"] if sampled else [])
        body = []
        for r in rows:
            line = [r["name"], f"{r['pass_at_1']:.3f}", f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", str(r["n"])]
            if sampled:
                line += [f"{r.get('sampled_pass_at_1', float('nan')):.3f}",
                         f"[{r.get('sampled_ci_low', 0):.3f}, {r.get('sampled_ci_high', 0):.3f}]"]
            body.append(line)
        notes = "".join(f"<p class='note'>{_e(c['candidate'])} vs {_e(c['baseline'])} ({c['metric']}): "
                        f"{c['delta']:+.3f}, {'beyond' if c['beyond_intervals'] else 'not beyond'} the intervals</p>"
                        for c in results.get("comparisons", []))
        parts.append(f"<h3>{_e(name)}</h3>" + table(header, body) + notes + _images(uri, ["curves.png"]))
    return "<h2>pass@1 by checkpoint</h2>" + "".join(parts) if parts else ""


def ttc_section(stages: dict[str, str]) -> str:
    parts = []
    for name, uri in stages.items():
        data = _json(join(uri, "ttc.json"))
        if not data:
            continue
        parts.append(f"<h3>{_e(name)}: {data['problems']} problems, {data['samples']} samples each</h3>")
        for checkpoint, rows in data["curves"].items():
            best = "best_of_n" in rows[0]
            header = ["N", "pass@N", "majority@N"] + (["best-of-N"] if best else []) + ["tokens / problem"]
            parts.append(f"<p>{_e(checkpoint)}</p>" + table(header, [
                [str(r["n"]), f"{r['pass']:.3f}", f"{r['majority']:.3f}"]
                + ([f"{r['best_of_n']:.3f}"] if best else []) + [f"{r['tokens']:.0f}"] for r in rows]))
        parts.append(_images(uri, ["ttc.png", "ttc_tokens.png"]))
    return "<h2>Test-time compute</h2>" + "".join(parts) if parts else ""


def contamination_section(stages: dict[str, str]) -> str:
    gated, reports = [], []
    for name, uri in stages.items():
        gate = _json(join(uri, "decontamination.json"))
        if gate:
            reasons = ", ".join(f"{k}: {v}" for k, v in gate.get("by_reason", {}).items()) or "-"
            gated.append([name, gate["filter"], gate["action"], f"{gate['checked']} {gate.get('what', '')}",
                          str(gate["dropped"]), reasons])
        report = _json(join(uri, "report.json"))
        if report and "flagged" in report and "index" in report:
            reports.append([name, str(report["records"]), str(report["flagged"]),
                            ", ".join(f"{k}: {v}" for k, v in report["by_set"].items()) or "-"])
    if not gated and not reports:
        return ""
    out = "<h2>Contamination</h2>"
    if gated:
        out += ("<p>Training data checked at load time (each stage's <code>decontaminate</code> gate); dropped "
                "records are in the stage's <code>contaminated.jsonl</code>.</p>"
                + table(["stage", "gate", "action", "checked", "dropped", "by eval set"], gated))
    if reports:
        out += table(["report stage", "records", "flagged", "by eval set"], reports)
    return out


def probes_section(stages: dict[str, str]) -> str:
    parts = []
    for name, uri in stages.items():
        data = _json(join(uri, "probes.json"))
        if not data:
            continue
        parts.append(f"<h3>{_e(name)}</h3>")
        table_md = join(uri, "table.md")
        if exists(table_md):
            with fsspec.open(table_md, "rt", encoding="utf-8") as handle:
                parts.append(markdown_table(handle.read()))
        for checkpoint in data.get("checkpoints", []):
            parts.append(_images(uri, [f"{checkpoint}/needle_heatmap.png"]))
    return "<h2>Long-context probes</h2>" + "".join(parts) if parts else ""


def curves_section(stages: dict[str, str]) -> str:
    parts = [f"<h3>{_e(name)}</h3>" + _images(uri, ["curves.png"]) for name, uri in stages.items()
             if exists(join(uri, "curves.png")) and not exists(join(uri, "results.json"))]
    return "<h2>Training curves</h2>" + "".join(parts) if parts else ""


# -- html helpers --------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text))


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def markdown_table(text: str) -> str:
    """The first markdown table of ``text`` as HTML (other lines as paragraphs)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.strip().startswith("|") and not set(line.strip()) <= set("|-: ")]
    other = "".join(f"<p class='note'>{_e(line)}</p>" for line in text.splitlines()
                    if line.strip() and not line.strip().startswith("|"))
    return other + (table(rows[0], rows[1:]) if rows else "")


def _images(uri: str, names: list[str]) -> str:
    out = []
    for name in names:
        path = join(uri, name)
        if exists(path):
            with fsspec.open(path, "rb") as handle:
                data = base64.b64encode(handle.read()).decode()
            out.append(f"<p><img alt='{_e(name)}' src='data:image/png;base64,{data}'></p>")
    return "".join(out)


def _json(uri: str) -> Any:
    try:
        return read_json(uri) if exists(uri) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
