"""Weights between the Hugging Face Llama layout and nanotron 0.4's ``LlamaForTraining`` (whole tensors).

Two differences besides the names:

- nanotron fuses q / k / v into ``qkv_proj`` and gate / up into ``gate_up_proj`` (concatenated rows);
- nanotron 0.4 trains with the *interleaved* (GPT-J) rotary layout, where rotation pairs are rows
  (2i, 2i + 1) of each head, while HF Llama rotates pairs (i, i + d/2) ("rotate_half"). Both use
  frequency i for pair i, so the same model is a permutation of the rows of q and k within each
  head: import interleaves them, export de-interleaves them. Attention scores are unchanged, since q
  and k move together.

Functions here see whole (unsharded) tensors; ``llm_nanotron.runtime`` cuts them into each rank's
shards with nanotron's own sharding metadata.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

EMBED = "model.token_position_embeddings.pp_block.token_embedding.weight"
LM_HEAD = "model.lm_head.pp_block.weight"
FINAL_NORM = "model.final_layer_norm.pp_block.weight"
LAYER = "model.decoder.{i}.pp_block."


def interleave_rows(head_dim: int) -> torch.Tensor:
    """Row order that takes a head from the HF (half-split) to the interleaved rotary layout:
    new row 2i is old row i, new row 2i + 1 is old row i + d/2."""
    half = torch.arange(head_dim // 2)
    return torch.stack((half, half + head_dim // 2), dim=1).flatten()


def to_interleaved(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(heads * head_dim, in) q or k projection, each head's rows put in the interleaved layout."""
    heads = weight.shape[0] // head_dim
    return weight.view(heads, head_dim, -1)[:, interleave_rows(head_dim)].reshape(weight.shape)


def from_interleaved(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Inverse of :func:`to_interleaved`."""
    heads = weight.shape[0] // head_dim
    inverse = torch.argsort(interleave_rows(head_dim))
    return weight.view(heads, head_dim, -1)[:, inverse].reshape(weight.shape)


def hf_to_nanotron(state: Mapping[str, torch.Tensor], num_layers: int, head_dim: int,
                   tie_embeddings: bool) -> dict[str, torch.Tensor]:
    """HF Llama tensors -> whole nanotron tensors, under nanotron's parameter names."""
    out = {EMBED: state["model.embed_tokens.weight"], FINAL_NORM: state["model.norm.weight"]}
    out[LM_HEAD] = state["model.embed_tokens.weight"] if tie_embeddings else state["lm_head.weight"]
    for i in range(num_layers):
        hf, nt = f"model.layers.{i}.", LAYER.format(i=i)
        q = to_interleaved(state[hf + "self_attn.q_proj.weight"], head_dim)
        k = to_interleaved(state[hf + "self_attn.k_proj.weight"], head_dim)
        out[nt + "attn.qkv_proj.weight"] = torch.cat((q, k, state[hf + "self_attn.v_proj.weight"]))
        out[nt + "attn.o_proj.weight"] = state[hf + "self_attn.o_proj.weight"]
        out[nt + "mlp.gate_up_proj.weight"] = torch.cat((state[hf + "mlp.gate_proj.weight"],
                                                         state[hf + "mlp.up_proj.weight"]))
        out[nt + "mlp.down_proj.weight"] = state[hf + "mlp.down_proj.weight"]
        out[nt + "input_layernorm.weight"] = state[hf + "input_layernorm.weight"]
        out[nt + "post_attention_layernorm.weight"] = state[hf + "post_attention_layernorm.weight"]
    return out


def nanotron_to_hf(state: Mapping[str, torch.Tensor], num_layers: int, num_heads: int, num_kv_heads: int,
                   head_dim: int, tie_embeddings: bool) -> dict[str, torch.Tensor]:
    """Whole nanotron tensors -> HF Llama tensors (``lm_head.weight`` only when not tied)."""
    out = {"model.embed_tokens.weight": state[EMBED], "model.norm.weight": state[FINAL_NORM]}
    if not tie_embeddings:
        out["lm_head.weight"] = state[LM_HEAD]
    q_rows, kv_rows = num_heads * head_dim, num_kv_heads * head_dim
    for i in range(num_layers):
        hf, nt = f"model.layers.{i}.", LAYER.format(i=i)
        q, k, v = torch.split(state[nt + "attn.qkv_proj.weight"], [q_rows, kv_rows, kv_rows])
        out[hf + "self_attn.q_proj.weight"] = from_interleaved(q, head_dim)
        out[hf + "self_attn.k_proj.weight"] = from_interleaved(k, head_dim)
        out[hf + "self_attn.v_proj.weight"] = v
        out[hf + "self_attn.o_proj.weight"] = state[nt + "attn.o_proj.weight"]
        gate, up = torch.chunk(state[nt + "mlp.gate_up_proj.weight"], 2)
        out[hf + "mlp.gate_proj.weight"], out[hf + "mlp.up_proj.weight"] = gate, up
        out[hf + "mlp.down_proj.weight"] = state[nt + "mlp.down_proj.weight"]
        out[hf + "input_layernorm.weight"] = state[nt + "input_layernorm.weight"]
        out[hf + "post_attention_layernorm.weight"] = state[nt + "post_attention_layernorm.weight"]
    return {k: v.contiguous() for k, v in out.items()}
