"""Entry point of llm-fp8: the precision recipes and the low-precision stages.

Everything heavy (torch) is imported inside the factories, so loading the plugin stays cheap.
"""

from __future__ import annotations

from typing import Any

from llm_core import hookimpl


@hookimpl
def register_precision_recipes(registry: Any) -> None:
    from llm_fp8 import recipes as r

    registry.add("fp8_deepseek", r.fp8_recipe, config=r.Fp8Config,
                 summary="FP8 linear layers: E4M3 1x128-tile activations, 128x128-block weights, E5M2 gradients, "
                 "fp32 promotion every 128 (DeepSeek-V3)")
    registry.add("fp8_tensorwise", r.fp8_recipe, config=r.Fp8TensorwiseConfig,
                 summary="FP8 linear layers with one scale per tensor (online or delayed scaling)")
    registry.add("mxfp8", r.mx_recipe, config=r.MxConfig,
                 summary="OCP MX linear layers (MXFP8 by default) in all three products, emulated")
    registry.add("mx_weights", r.mx_weights_recipe, config=r.MxWeightsConfig,
                 summary="MX weights only (MXFP4 by default), fake-quantized with a straight-through gradient")
    registry.add("qat", r.qat_recipe, config=r.QatConfig,
                 summary="quantization-aware training: INT4 / INT8 fake-quantized weights (and INT8 activations)")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_fp8.stages import PrecisionReportConfig, QuantizeWeightsConfig

    def quantize_weights(config: QuantizeWeightsConfig) -> Any:
        from llm_fp8.stages import QuantizeWeightsStage

        return QuantizeWeightsStage(config)

    def precision_report(config: PrecisionReportConfig) -> Any:
        from llm_fp8.stages import PrecisionReportStage

        return PrecisionReportStage(config)

    registry.add("quantize_weights", quantize_weights, config=QuantizeWeightsConfig, inputs=("checkpoint",),
                 summary="PTQ / QAT export: INT4 or INT8 weights (per channel or group), codes + a decoded checkpoint")
    registry.add("precision_report", precision_report, config=PrecisionReportConfig, optional_inputs=("*",),
                 summary="loss curves of runs in several precisions on one PNG, final loss and gap to a baseline")
