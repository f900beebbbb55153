"""The context-extension contract (llm_core.engines): what a RoPE scaling and a context-parallel
attention provide, checked structurally, and the request field that carries the latter."""

from __future__ import annotations

from llm_core.engines import ContextParallelAttention, EngineRequest, RopeScaling
from llm_core.specs import ModelShape


class HalfFrequencies:
    dynamic = False

    def inv_freq(self, head_dim, theta, max_position_embeddings, seq_len):
        return [0.5 / theta ** (2 * i / head_dim) for i in range(head_dim // 2)], 1.0

    def rope_parameters(self, theta, head_dim):
        return {"rope_type": "linear", "rope_theta": theta, "factor": 2.0}


class EveryOtherToken:
    def multiple(self, world):
        return world

    def positions(self, seq_len, rank, world):
        return list(range(rank, seq_len, world))

    def attention(self, q, k, v):
        return q


def test_protocols_recognise_implementations_and_reject_others():
    assert isinstance(HalfFrequencies(), RopeScaling)
    assert isinstance(EveryOtherToken(), ContextParallelAttention)
    assert not isinstance(EveryOtherToken(), RopeScaling)
    assert not isinstance(HalfFrequencies(), ContextParallelAttention)


def test_engine_request_carries_the_context_parallel_attention():
    attention = EveryOtherToken()
    request = EngineRequest(model=ModelShape(), tokenizer="tok", context_parallel=attention)
    assert request.context_parallel is attention
    assert EngineRequest(checkpoint="ckpt").context_parallel is None
