"""Entry point of llm-distill: its losses and stages, and a recipe check for missing checkpoints.

torch and the stage modules are imported inside the factories, so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from llm_core.hookspecs import hookimpl

CHECKPOINT_INPUTS = {"distill": ("student", "teacher"), "teacher_generate": ("teacher",),
                     "distill_report": ("teacher",)}


@hookimpl
def register_losses(registry: Any) -> None:
    from llm_distill import losses as L

    registry.add("forward_kl", L.forward_kl, config=L.DistillLossConfig,
                 summary="KL(teacher || student) at temperature T (x T^2), + alpha x cross-entropy")
    registry.add("reverse_kl", L.reverse_kl, config=L.DistillLossConfig,
                 summary="KL(student || teacher) at temperature T (x T^2), + alpha x cross-entropy")
    registry.add("jsd", L.jsd, config=L.JsdLossConfig,
                 summary="generalized Jensen-Shannon divergence (beta), GKD's loss")
    registry.add("minillm", L.minillm, config=L.MiniLlmConfig,
                 summary="MiniLLM: reverse-KL policy gradient on student samples")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_distill.distill_stage import DistillConfig
    from llm_distill.generate_stage import TeacherGenerateConfig
    from llm_distill.report_stage import DistillReportConfig

    def distill(config: DistillConfig) -> Any:
        from llm_distill.distill_stage import DistillStage

        return DistillStage(config)

    def teacher_generate(config: TeacherGenerateConfig) -> Any:
        from llm_distill.generate_stage import TeacherGenerateStage

        return TeacherGenerateStage(config)

    def distill_report(config: DistillReportConfig) -> Any:
        from llm_distill.report_stage import DistillReportStage

        return DistillReportStage(config)

    registry.add("distill", distill, config=DistillConfig, inputs=("student", "teacher", "conversations"),
                 optional_inputs=("*",),
                 summary="soft-label KD (online or cached top-k) or on-policy GKD / MiniLLM from a frozen teacher")
    registry.add("teacher_generate", teacher_generate, config=TeacherGenerateConfig,
                 inputs=("teacher", "problems"),
                 summary="the teacher answers prompts, optionally verified: an SFT set (hard-label KD)")
    registry.add("distill_report", distill_report, config=DistillReportConfig,
                 inputs=("teacher", "problems", "pass_at_1"), optional_inputs=("*",),
                 summary="share of the teacher's pass@1 each student keeps, exposure bias, table and plot")


@hookimpl
def validate_pipeline(recipe: Any, registries: Any) -> list[str] | None:
    """A checkpoint input given as a path must be a checkpoint folder already (it is read as is)."""
    from llm_core.artifacts import exists, join, resolve_input_ref

    names = [s.name for s in recipe.stages]
    problems = []
    for spec in recipe.stages:
        for key in CHECKPOINT_INPUTS.get(spec.kind, ()):
            ref = spec.inputs.get(key)
            if ref is None:
                continue
            resolved = resolve_input_ref(ref, names, recipe.base_dir)
            if resolved.stage is None and not exists(join(resolved.uri, "config.json")):
                problems.append(f"stages.{spec.name}.inputs.{key}: no {key} checkpoint at {resolved.uri} "
                                f"(no config.json); write it first (for the tiny-r1 teacher: uv run llmt run "
                                f"integration/recipes/tiny-r1.toml --root runs/tiny-r1) or point {key} at a "
                                "checkpoint folder, e.g. --set stages." + spec.name + f".inputs.{key}=PATH")
    return problems or None
