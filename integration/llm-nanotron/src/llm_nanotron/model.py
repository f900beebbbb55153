"""nanotron's ``LlamaForTraining`` with its loss block replaced by per-token log-probabilities.

nanotron ends the model with a ``PipelineBlock`` that averages the cross-entropy. llmt's losses are
pure functions of per-token log-probs (or logits) that the engine calls in the stage's process, so
the last block here returns, on the last pipeline stage, ``logprobs`` (B, T) -- exact under tensor
parallelism, from nanotron's sharded cross-entropy over the vocabulary-sharded logits -- and the
sharded logits themselves (B, T, V / tp) for losses that name ``logits``. Imported in worker
processes only, after :func:`llm_nanotron.compat.load_nanotron`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from nanotron.config import LlamaConfig, ParallelismArgs
from nanotron.models import llama
from nanotron.parallel.pipeline_parallel.block import PipelineBlock
from nanotron.parallel.pipeline_parallel.engine import AllForwardAllBackwardPipelineEngine
from nanotron.parallel.pipeline_parallel.p2p import P2P
from nanotron.parallel.tensor_parallel.functional import sharded_cross_entropy
from nanotron.parallel.tensor_parallel.nn import TensorParallelLinearMode
from torch import nn


class TokenLogprobs(nn.Module):
    """log p(label) per token from vocabulary-sharded logits, 0 where ``label_mask`` is False."""

    def __init__(self, tp_pg: Any):
        super().__init__()
        self.tp_pg = tp_pg

    def forward(self, sharded_logits: torch.Tensor, label_ids: torch.Tensor, label_mask: torch.Tensor):
        # sharded_logits is [seq, batch, vocab / tp], nanotron's layout; labels are [batch, seq].
        nll = sharded_cross_entropy(sharded_logits, label_ids.transpose(0, 1).contiguous(), group=self.tp_pg,
                                    dtype=torch.float).transpose(0, 1)
        return {"logprobs": -nll * label_mask, "sharded_logits": sharded_logits.transpose(0, 1)}


class LlmtLlamaForTraining(llama.LlamaForTraining):
    """``LlamaForTraining`` whose output is ``{"logprobs", "sharded_logits"}`` instead of a mean loss."""

    def __init__(self, config: LlamaConfig, parallel_context: Any, parallel_config: ParallelismArgs | None,
                 random_states: Any = None):
        super().__init__(config=config, parallel_context=parallel_context, parallel_config=parallel_config,
                         random_states=random_states)
        self.loss = PipelineBlock(p2p=self.model.p2p, module_builder=TokenLogprobs,
                                  module_kwargs={"tp_pg": parallel_context.tp_pg},
                                  module_input_keys={"sharded_logits", "label_ids", "label_mask"},
                                  module_output_keys={"logprobs", "sharded_logits"})

    def forward(self, input_ids, input_mask, label_ids, label_mask):
        sharded_logits = self.model(input_ids=input_ids, input_mask=input_mask)
        return self.loss(sharded_logits=sharded_logits, label_ids=label_ids, label_mask=label_mask)


def llama_config(shape: dict[str, Any]) -> LlamaConfig:
    """nanotron's config for an llmt model shape (``llm_torch.model.ModelConfig`` fields).

    ``pad_token_id`` stays None: nanotron would freeze that embedding row (``padding_idx``), and
    llmt's tokenizers pad with EOS when they have no pad token."""
    return LlamaConfig(
        hidden_size=shape["hidden_size"], intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"], vocab_size=shape["vocab_size"],
        max_position_embeddings=shape["max_seq_len"], rms_norm_eps=shape["rms_norm_eps"],
        tie_word_embeddings=shape["tie_embeddings"], hidden_act="silu", pad_token_id=None,
        bos_token_id=shape.get("bos_id") or 0, eos_token_id=shape.get("eos_id") or 0, rope_scaling=None)


def parallelism(tp: int, pp: int, dp: int) -> ParallelismArgs:
    return ParallelismArgs(dp=dp, pp=pp, tp=tp, pp_engine=AllForwardAllBackwardPipelineEngine(),
                           tp_mode=TensorParallelLinearMode.ALL_REDUCE, tp_linear_async_communication=False)


@contextlib.contextmanager
def p2p_on(device: torch.device):
    """nanotron 0.4's ``LlamaModel`` builds its pipeline P2P buffers on CUDA unconditionally; on CPU
    they must live on the CPU (gloo), so the class is swapped for the duration of the build."""
    original = llama.P2P

    def make(pg: Any, device_ignored: Any = None, **_: Any) -> P2P:
        return P2P(pg, device=device)

    llama.P2P = make
    try:
        yield
    finally:
        llama.P2P = original
