"""Precision recipes: registered components that convert an engine's model (``recipe.apply(model)``).

An engine applies the recipe its ``EngineSpec.precision_recipe`` names to its model before it
builds the optimizer (``llm_core.engines``). ``apply`` walks the model's modules and replaces every
``nn.Linear`` that the recipe's module filter selects by a layer computing in the recipe's
precision; the replacement holds the *same* parameter objects, so names, ties, checkpoints and the
fp32 master weights are untouched. The rest of the model (embeddings, output head, norms:
excluded by default, DeepSeek-V3's policy) runs in the engine's own precision: fp32, or bf16
with ``engine.precision = "bf16"`` (the "BF16 fallback").

Configs are pure pydantic (no torch), so ``llmt describe precision_recipe fp8_deepseek`` stays fast.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import Field, model_validator

from llm_core.config import Config
from llm_fp8.names import ElementName, Fp8Name, Granularity

DEFAULT_EXCLUDE = ("lm_head", "*embed*", "*norm*", "value_head")


class TorchConfig(Config):
    """Options of a component that computes with torch (an optional dependency of this package)."""

    def required_modules(self) -> dict[str, str]:
        return {"torch": "pip install 'llm-fp8[torch]'", "safetensors": "pip install 'llm-fp8[torch]'"}


class ModuleFilter(Config):
    """Which linear layers a recipe converts, by module path (``model.layers.0.mlp.up_proj``),
    with shell patterns; a path must match one of ``include`` and none of ``exclude``."""

    include: list[str] = Field(default_factory=lambda: ["*"], description="patterns of module paths to convert")
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE),
                               description="patterns kept in the engine's precision (default: embeddings, "
                               "output head, norms, value head)")

    def selects(self, path: str) -> bool:
        return (any(fnmatch.fnmatchcase(path, p) for p in self.include)
                and not any(fnmatch.fnmatchcase(path, p) for p in self.exclude))


class Fp8Config(TorchConfig):
    """FP8 training with DeepSeek-V3's fine-grained scaling (arXiv 2412.19437, section 3.3)."""

    format: Fp8Name = Field("e4m3", description="weights and activations")
    grad_format: Fp8Name = Field("e5m2", description="output gradients in the backward pass")
    input_scaling: Granularity = Field("tile", description="activations: tensor, row, tile (1x128) or block")
    weight_scaling: Granularity = Field("block", description="weights: 128x128 blocks by default")
    grad_scaling: Granularity = Field("tile", description="output gradients")
    scaling: Literal["online", "delayed"] = Field("online", description="amax of the current tensor, or the "
                                                  "max over an amax history (per-tensor scaling only)")
    amax_history: int = Field(16, ge=1, description="delayed scaling: steps of amax history")
    power_of_two_scales: bool = Field(False, description="round scales up to powers of two (exact dequantization)")
    kernels: Literal["auto", "emulate"] = Field("auto", description="auto: torch's FP8 GEMMs on CUDA where they "
                                                "apply; emulate: the exact fp32 emulation everywhere")
    modules: ModuleFilter = Field(default_factory=ModuleFilter)

    @model_validator(mode="after")
    def _delayed_is_per_tensor(self) -> Fp8Config:
        scalings = {self.input_scaling, self.weight_scaling, self.grad_scaling}
        if self.scaling == "delayed" and scalings != {"tensor"}:
            raise ValueError("delayed scaling keeps one amax per tensor: set input_scaling, weight_scaling and "
                             "grad_scaling to 'tensor' (tiles change with every batch's shape)")
        return self


class Fp8TensorwiseConfig(Fp8Config):
    """The simpler baseline: one scale per tensor for activations, weights and gradients."""

    input_scaling: Granularity = "tensor"
    weight_scaling: Granularity = "tensor"
    grad_scaling: Granularity = "tensor"


class MxConfig(TorchConfig):
    """All three products of every selected linear layer in an MX format (blocks of 32, E8M0 scales)."""

    weight: ElementName = Field("e4m3", description="MX element format of the weights")
    activation: ElementName = Field("e4m3", description="of the activations")
    grad: ElementName = Field("e4m3", description="of the output gradients (torchao's MXFP8 default: e4m3)")
    modules: ModuleFilter = Field(default_factory=ModuleFilter)


class MxWeightsConfig(TorchConfig):
    """Only the weights in an MX format (MXFP4 by default), fake-quantized with a straight-through gradient."""

    weight: ElementName = Field("e2m1", description="e2m1 (MXFP4), e2m3 / e3m2 (MXFP6), e4m3 / e5m2 (MXFP8)")
    modules: ModuleFilter = Field(default_factory=ModuleFilter)


class IntScheme(Config):
    """Symmetric integer weights: ``bits`` 4 or 8, one scale per ``group_size`` input features
    (null: one per output channel)."""

    bits: Literal[4, 8] = 4
    group_size: int | None = Field(32, ge=2, description="input features per scale; null: per channel")


class QatConfig(TorchConfig):
    """Quantization-aware training: the forward pass sees quantized weights (and activations)."""

    weights: IntScheme = Field(default_factory=IntScheme)
    activations: Literal["none", "int8"] = Field("none", description="int8: per-token dynamic INT8 activations")
    modules: ModuleFilter = Field(default_factory=ModuleFilter)


class LayerSwapRecipe:
    """A recipe that replaces the selected linear layers by ``layer(linear, config)``."""

    def __init__(self, config: Any, layer: Any):
        self.config = config
        self.layer = layer

    def apply(self, model: Any) -> list[str]:
        """Convert ``model`` in place; returns the module paths converted."""
        from torch import nn

        targets = [(path, module) for path, module in model.named_modules()
                   if isinstance(module, nn.Linear) and self.config.modules.selects(path)]
        for path, module in targets:
            parent_path, _, attribute = path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            setattr(parent, attribute, self.layer(module, self.config))
        return [path for path, _ in targets]


def fp8_recipe(config: Fp8Config) -> LayerSwapRecipe:
    from llm_fp8.fp8_linear import Fp8Linear

    return LayerSwapRecipe(config, Fp8Linear)


def mx_recipe(config: MxConfig) -> LayerSwapRecipe:
    from llm_fp8.mx import MxLinear

    return LayerSwapRecipe(config, MxLinear)


def mx_weights_recipe(config: MxWeightsConfig) -> LayerSwapRecipe:
    from llm_fp8.mx import MxWeightLinear

    return LayerSwapRecipe(config, MxWeightLinear)


def qat_recipe(config: QatConfig) -> LayerSwapRecipe:
    from llm_fp8.qat import FakeQuantLinear

    return LayerSwapRecipe(config, FakeQuantLinear)
