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
    registry.add("eval_report", eval_report, config=EvalReportConfig, optional_inputs=("*",),
                 summary="one self-contained HTML page comparing a run's checkpoints and stages")
