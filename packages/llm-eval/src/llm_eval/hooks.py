"""Entry point of llm-eval: its filter, stages, eval tasks, callback and the ``plan`` command.

Components are imported inside the hook functions so that loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from llm_core.hookspecs import hookimpl


@hookimpl
def register_filters(registry: Any) -> None:
    from llm_eval.contamination import ContaminationConfig, ContaminationFilter

    registry.add("contamination", ContaminationFilter, config=ContaminationConfig,
                 summary="drops documents matching an eval item (13-gram, or overlap for short items)")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_eval.contamination import (
        ContaminationIndexConfig,
        ContaminationIndexStage,
        ContaminationReportConfig,
        ContaminationReportStage,
    )

    registry.add("contamination_index", ContaminationIndexStage, config=ContaminationIndexConfig,
                 optional_inputs=("*",), summary="n-gram index over eval sets, built once and saved")
    registry.add("contamination_report", ContaminationReportStage, config=ContaminationReportConfig,
                 inputs=("documents",), optional_inputs=("*",),
                 summary="flag the records of any data set that match an eval item, with item and span")
    from llm_eval.report import EvalReportConfig
    from llm_eval.ttc import TestTimeComputeConfig

    def test_time_compute(config: TestTimeComputeConfig) -> Any:
        from llm_eval.ttc import TestTimeComputeStage

        return TestTimeComputeStage(config)

    def eval_report(config: EvalReportConfig) -> Any:
        from llm_eval.report import EvalReportStage

        return EvalReportStage(config)

    registry.add("test_time_compute", test_time_compute, config=TestTimeComputeConfig, inputs=("problems",),
                 optional_inputs=("*",), summary="pass@N, majority@N, best-of-N against N (and tokens) per checkpoint")
    from llm_eval.probes_stage import LongContextProbesConfig

    def long_context_probes(config: LongContextProbesConfig) -> Any:
        from llm_eval.probes_stage import LongContextProbesStage

        return LongContextProbesStage(config)

    registry.add("long_context_probes", long_context_probes, config=LongContextProbesConfig, optional_inputs=("*",),
                 summary="needle-in-a-haystack grid, RULER tasks, BABILong facts per checkpoint; heat maps")
    from llm_eval.evaluate import EvaluateConfig

    def evaluate(config: EvaluateConfig) -> Any:
        from llm_eval.evaluate import EvaluateStage

        return EvaluateStage(config)

    registry.add("evaluate", evaluate, config=EvaluateConfig, optional_inputs=("*",),
                 summary="registered eval tasks on named checkpoints: pass@k, accuracy, 95% intervals")
    registry.add("eval_report", eval_report, config=EvalReportConfig, optional_inputs=("*",),
                 summary="one self-contained HTML page comparing a run's checkpoints and stages")


@hookimpl
def register_eval_tasks(registry: Any) -> None:
    from llm_eval import tasks as t

    registry.add("math", t.MathTask, config=t.MathTaskConfig,
                 summary="problems {prompt, reference} (or GSM8K's exemplars) judged by the math verifier")
    registry.add("humaneval", t.HumanEvalTask, config=t.HumanEvalTaskConfig,
                 summary="HumanEval's 164 problems run against their tests in the sandbox (code verifier)")
    registry.add("multiple_choice", t.MultipleChoiceTask, config=t.MultipleChoiceConfig,
                 summary="questions with choices (or MMLU's exemplars) scored by log-likelihood")


@hookimpl
def register_callbacks(registry: Any) -> None:
    from llm_eval.evaluate import PeriodicEvalConfig

    def periodic_eval(config: PeriodicEvalConfig) -> Any:
        from llm_eval.evaluate import PeriodicEval

        return PeriodicEval(config)

    registry.add("periodic_eval", periodic_eval, config=PeriodicEvalConfig,
                 summary="evaluates registered tasks on the engine being trained every N steps")


@hookimpl
def register_commands(registry: Any) -> None:
    from llm_eval.plan import plan

    registry.add("plan", plan, summary="compute-optimal planner: Chinchilla tokens, FLOPs, over-training economics")
