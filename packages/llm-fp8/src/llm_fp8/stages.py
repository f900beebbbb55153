"""Stages: ``quantize_weights`` (PTQ, and the export of a QAT-trained model) and ``precision_report``.

``quantize_weights`` takes a ``checkpoint`` (any HF folder an engine loads), quantizes the weights
of the linear layers its module filter selects (``qat.py``'s quantizer, the one QAT trains
against), and writes ``quantized.safetensors`` (integer codes and scales) and ``checkpoint/``: the
same model with those weights decoded, an HF folder any stage evaluates (``rlvr_eval``).

``precision_report`` compares training runs of the same model in several precisions: its inputs
are the runs' stage folders by name (``fp32 = "pretrain_fp32"``); it reads each ``metrics.jsonl``
and writes ``curves.png`` (every run's loss on one plot, and its gap to the baseline) and
``table.md`` / ``results.json`` (final loss: the mean over the last ``final_window`` logged steps,
every run having seen the same batches; and its gap to the baseline's, in percent).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import Field

from llm_core.artifacts import atomic_open, exists, join, write_json
from llm_core.config import Config
from llm_core.plots import save_figure
from llm_core.specs import EngineSpec
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_fp8.recipes import IntScheme, ModuleFilter, TorchConfig

log = logging.getLogger("llmt.fp8")


class QuantizeWeightsConfig(TorchConfig):
    engine: EngineSpec = Field(default_factory=EngineSpec, description="the engine that loads and writes the model")
    weights: IntScheme = Field(default_factory=IntScheme)
    modules: ModuleFilter = Field(default_factory=ModuleFilter)


class QuantizeWeightsStage:
    def __init__(self, config: QuantizeWeightsConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        from llm_fp8.qat import quantize_state, save_quantized

        c = self.config
        engine = ctx.train_engine(c.engine, checkpoint=ctx.input("checkpoint"))  # frozen: no optimizer
        state = engine.hf_state_dict()
        exported, dequantized = quantize_state(state, c.weights, c.modules.selects)
        quantized = sorted(name.removesuffix(".codes") for name in exported if name.endswith(".codes"))
        if not quantized:
            raise ValueError(f"stage {ctx.name!r}: the module filter {c.modules.model_dump()} selects no linear "
                             f"layer of {ctx.input('checkpoint')}; weights there: {sorted(state)[:6]}...")
        metrics = quantization_metrics(state, dequantized, quantized, c.weights)  # before: state shares storage
        save_quantized(ctx.path("quantized.safetensors"), exported, c.weights)
        engine.update_weights(dequantized)
        engine.export_hf(ctx.path("checkpoint"), {"stage": "quantize_weights", "scheme": c.weights.model_dump(),
                                                  "quantized": quantized})
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"checkpoint": ctx.path("checkpoint"),
                                                       "quantized": ctx.path("quantized.safetensors")})


def quantization_metrics(state: dict[str, Any], dequantized: dict[str, Any], quantized: list[str],
                         scheme: IntScheme) -> dict[str, float]:
    """How many weights were quantized, their bits each (scales included) and the relative error."""
    elements = sum(state[n].numel() for n in quantized)
    groups = sum(state[n].shape[0] * (state[n].shape[1] // (scheme.group_size or state[n].shape[1]))
                 for n in quantized)
    error = sum(float((dequantized[n].float() - state[n].float()).pow(2).sum()) for n in quantized)
    norm = sum(float(state[n].float().pow(2).sum()) for n in quantized)
    return {"quantized_tensors": len(quantized), "quantized_weights": elements,
            "bits_per_weight": scheme.bits + 32 * groups / elements,
            "relative_error": (error / max(norm, 1e-30)) ** 0.5}


class PrecisionReportConfig(Config):
    baseline: str = Field("fp32", description="the input the others are compared with")
    metric: str = Field("loss", description="the logged metric compared")
    final_window: int = Field(20, ge=1, description="logged steps averaged into the final value")
    title: str = "training loss by precision"


class PrecisionReportStage:
    def __init__(self, config: PrecisionReportConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        if c.baseline not in ctx.inputs:
            raise ValueError(f"stage {ctx.name!r}: baseline {c.baseline!r} is not an input; "
                             f"inputs: {sorted(ctx.inputs)}")
        curves = {name: metric_curve(uri, c.metric) for name, uri in ctx.inputs.items()}
        rows = summarize(curves, c.baseline, c.final_window)
        table = render_table(rows, c)
        print(table)
        with atomic_open(ctx.path("table.md"), "wt", encoding="utf-8") as handle:
            handle.write(table + "\n")
        write_json(ctx.path("results.json"), {"rows": rows, "metric": c.metric, "final_window": c.final_window})
        artifacts = {"table": ctx.path("table.md"), "results": ctx.path("results.json")}
        if plot_precision_curves(curves, c.baseline, ctx.path("curves.png"), c.title, c.metric):
            artifacts["curves"] = ctx.path("curves.png")
        metrics = {f"final/{r['name']}": r["final"] for r in rows}
        metrics.update({f"gap_pct/{r['name']}": r["gap_pct"] for r in rows})
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts=artifacts)


def metric_curve(stage_uri: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of one logged metric in a stage folder's ``metrics.jsonl``."""
    import fsspec

    path = join(stage_uri, "metrics.jsonl")
    if not exists(path):
        raise FileNotFoundError(f"{path}: no metrics; an input of precision_report is a training stage's folder")
    with fsspec.open(path, "r", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    curve = sorted((r["step"], float(r[metric])) for r in records
                   if isinstance(r.get("step"), int) and isinstance(r.get(metric), (int, float)))
    if not curve:
        raise ValueError(f"{path}: no record logs {metric!r} with a step")
    return curve


def summarize(curves: dict[str, list[tuple[int, float]]], baseline: str, window: int) -> list[dict[str, Any]]:
    finals = {name: sum(v for _, v in curve[-window:]) / len(curve[-window:]) for name, curve in curves.items()}
    base = finals[baseline]
    return [{"name": name, "steps": curves[name][-1][0], "final": round(final, 5),
             "gap": round(final - base, 5), "gap_pct": round(100 * (final - base) / base, 3)}
            for name, final in finals.items()]


def render_table(rows: list[dict[str, Any]], c: PrecisionReportConfig) -> str:
    lines = [f"final {c.metric} (mean of the last {c.final_window} logged steps) and its gap to {c.baseline}", "",
             f"| run | steps | final {c.metric} | gap | gap (%) |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['steps']} | {r['final']:.4f} | {r['gap']:+.4f} | {r['gap_pct']:+.2f}% |"
              for r in rows]
    return "\n".join(lines)


def plot_precision_curves(curves: dict[str, list[tuple[int, float]]], baseline: str, out_uri: str, title: str,
                          metric: str) -> bool:
    """Every run's curve on one panel, and each run's difference to the baseline on a second."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("curves not drawn: matplotlib is not installed (pip install matplotlib)")
        return False
    fig, (ax_curve, ax_gap) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(2, 1))
    base = dict(curves[baseline])
    for index, (name, curve) in enumerate(curves.items()):
        steps, values = zip(*curve, strict=True)
        color = f"C{index}"  # the same colour for a run in both panels
        ax_curve.plot(steps, values, label=name, linewidth=1.2, color=color)
        shared = [(s, v - base[s]) for s, v in curve if s in base]
        if shared and name != baseline:
            ax_gap.plot(*zip(*shared, strict=True), label=name, linewidth=1.0, color=color)
    ax_curve.set_ylabel(metric)
    ax_curve.set_title(title)
    ax_gap.axhline(0.0, color="black", linewidth=0.8)
    ax_gap.set_ylabel(f"{metric} - {baseline}")
    ax_gap.set_xlabel("step")
    for ax in (ax_curve, ax_gap):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, out_uri)
    return True
