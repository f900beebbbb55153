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
