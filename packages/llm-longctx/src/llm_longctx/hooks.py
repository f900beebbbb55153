"""Entry point of llm-longctx: its context extensions (RoPE scalings, ring attention) and stages.

The RoPE scalings are registered under the ``rope_type`` names of Hugging Face's
``rope_parameters`` (``linear``, ``dynamic``, ``yarn``, ``llama3``; and ``ntk``, which
transformers writes as plain RoPE on a larger base), so that an engine loading a checkpoint finds
the one its ``config.json`` names. torch is imported only when a component is built.
"""

from __future__ import annotations

from typing import Any

from llm_core.hookspecs import hookimpl


@hookimpl
def register_context_extensions(registry: Any) -> None:
    from llm_longctx import rope
    from llm_longctx.configs import RingAttentionConfig

    registry.add("linear", rope.LinearScaling, config=rope.LinearConfig,
                 summary="RoPE position interpolation (PI): positions / factor")
    registry.add("ntk", rope.NtkScaling, config=rope.NtkConfig,
                 summary="NTK-aware RoPE: base * factor ** (d / (d - 2)); exported as plain RoPE on that base")
    registry.add("dynamic", rope.DynamicNtkScaling, config=rope.DynamicConfig,
                 summary="dynamic NTK RoPE: beyond max_position_embeddings the base grows with the length")
    registry.add("yarn", rope.YarnScaling, config=rope.YarnConfig,
                 summary="YaRN RoPE: ramp between interpolated and kept pairs, attention temperature 0.1 ln s + 1")
    registry.add("llama3", rope.Llama3Scaling, config=rope.Llama3Config,
                 summary="Llama 3.1 RoPE: low-frequency band / factor, high band kept, smooth between")

    def ring_attention(config: RingAttentionConfig) -> Any:
        from llm_longctx.ring import RingAttention

        return RingAttention(config)

    registry.add("ring_attention", ring_attention, config=RingAttentionConfig,
                 summary="context parallelism: ring attention over torch.distributed, zigzag / striped balance")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_longctx.configs import ExtendContextConfig, LongDocumentsConfig, PositionPerplexityConfig

    def long_documents(config: LongDocumentsConfig) -> Any:
        from llm_longctx.documents import LongDocumentsStage

        return LongDocumentsStage(config)

    def extend_context(config: ExtendContextConfig) -> Any:
        from llm_longctx.extend import ExtendContextStage

        return ExtendContextStage(config)

    def position_perplexity(config: PositionPerplexityConfig) -> Any:
        from llm_longctx.perplexity import PositionPerplexityStage

        return PositionPerplexityStage(config)

    registry.add("long_documents", long_documents, config=LongDocumentsConfig,
                 summary="seeded documents whose repeated statements need long-range recall (train, long, held out)")
    registry.add("extend_context", extend_context, config=ExtendContextConfig, inputs=("checkpoint",),
                 summary="give an HF checkpoint a registered RoPE scaling and a longer context (config.json)")
    registry.add("position_perplexity", position_perplexity, config=PositionPerplexityConfig,
                 inputs=("documents",), optional_inputs=("*",),
                 summary="perplexity of named checkpoints on long documents by position bucket, with a plot")
