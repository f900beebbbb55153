"""``dedup_charts``: the PNG charts of other stages' reports, drawn in one process at the end.

The dedup stages write their chart data into ``report.json`` and draw nothing, so a run pays
matplotlib's import and drawing (seconds) once, and only when a recipe asks for charts.
"""

from __future__ import annotations

from llm_core.artifacts import exists, join, read_json
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_dedup.report import draw_charts


class DedupChartsStage:
    """Writes ``<input name>.png`` for every input stage whose ``report.json`` holds charts."""

    def run(self, ctx: StageContext) -> StageResult:
        drawn = {}
        for name, uri in sorted(ctx.inputs.items()):
            report_uri = join(uri, "report.json")
            if not exists(report_uri):
                raise FileNotFoundError(f"stage {ctx.name!r}: input {name!r} has no report.json at {report_uri}; "
                                        "point it at a dedup stage")
            panels = read_json(report_uri).get("charts") or []
            if panels:
                draw_charts(panels, ctx.path(f"{name}.png"))
                drawn[name] = ctx.path(f"{name}.png")
        ctx.log_metrics({"charts": len(drawn)})
        return StageResult(metrics={"charts": len(drawn)}, artifacts=drawn)
