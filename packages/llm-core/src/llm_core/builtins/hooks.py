"""Core's built-in plugin: executors, JSONL I/O, generic filters, two stages, cross-entropy."""

from __future__ import annotations

from typing import Any

from llm_core.hookspecs import hookimpl


@hookimpl
def register_executors(registry: Any) -> None:
    from llm_core.executors.local import LocalExecutor, LocalExecutorConfig
    from llm_core.executors.ray import RayExecutor, RayExecutorConfig

    registry.add("local", LocalExecutor, config=LocalExecutorConfig,
                 summary="process pool on this machine (1 worker: in-process)")
    registry.add("ray", RayExecutor, config=RayExecutorConfig,
                 summary="one Ray task per shard (needs llm-core[ray])")


@hookimpl
def register_readers(registry: Any) -> None:
    from llm_core.builtins.jsonl import JsonlReader, JsonlReaderConfig

    registry.add("jsonl", JsonlReader, config=JsonlReaderConfig, summary="JSON Lines, plain / .gz / .zst")


@hookimpl
def register_writers(registry: Any) -> None:
    from llm_core.builtins.jsonl import JsonlWriter

    registry.add("jsonl", JsonlWriter, summary="JSON Lines, atomic")


@hookimpl
def register_filters(registry: Any) -> None:
    from llm_core.builtins.filters import LengthFilter, LengthFilterConfig, RegexFilter, RegexFilterConfig

    registry.add("length", LengthFilter, config=LengthFilterConfig)
    registry.add("regex", RegexFilter, config=RegexFilterConfig)


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_core.builtins.filter_stage import FilterStage, FilterStageConfig
    from llm_core.builtins.synthetic import SyntheticTextConfig, SyntheticTextStage
    from llm_core.builtins.verify_stage import VerifyStage, VerifyStageConfig

    registry.add("synthetic_text", SyntheticTextStage, config=SyntheticTextConfig)
    registry.add("filter", FilterStage, config=FilterStageConfig, inputs=("documents",), optional_inputs=("*",),
                 summary="chain of registered filters / transforms over document shards")
    registry.add("verify", VerifyStage, config=VerifyStageConfig, inputs=("completions",),
                 summary="score completions (JSONL: prompt, completion, reference) with a verifier")


@hookimpl
def register_losses(registry: Any) -> None:
    from llm_core.builtins.losses import CrossEntropyConfig, make_cross_entropy

    registry.add("cross_entropy", make_cross_entropy, config=CrossEntropyConfig,
                 summary="next-token cross-entropy ignoring label -100 (masked tokens)")
