"""Plugin entry point of llm-vllm: the ``vllm`` rollout engine and the ``llmt vllm`` command.

Nothing heavy is imported here: vLLM itself lives in its own environment, and the adapter's
modules load when the registry builds an engine.
"""

from __future__ import annotations

from typing import Any

from llm_core import hookimpl
from llm_vllm.config import VllmConfig


def vllm_backend(config: VllmConfig) -> Any:
    from llm_vllm.backend import VllmBackend

    return VllmBackend(config)


@hookimpl
def register_rollout_engines(registry: Any) -> None:
    registry.add("vllm", vllm_backend, config=VllmConfig,
                 summary="vLLM server in its own environment (llmt vllm setup): raw log-probs, weight sync")


@hookimpl
def register_commands(registry: Any) -> None:
    from llm_vllm.cli import vllm_command

    registry.add("vllm", vllm_command, summary="vLLM's environment and rollout server: setup | serve | info")
