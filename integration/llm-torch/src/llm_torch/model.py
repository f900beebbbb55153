"""A Llama-style decoder in plain PyTorch, meant to be read in one sitting.

RMSNorm, SwiGLU, rotary position embeddings (RoPE), grouped-query attention through
``scaled_dot_product_attention``, optional tied embeddings and an optional scalar (value) head.
Parameter names follow Hugging Face's ``LlamaForCausalLM`` so that import and export are a rename
of nothing (see ``hf.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llm_core.engines import RopeScaling
from llm_torch.decode import DecodeWeights, LayerWeights
from llm_torch.fused import rms_norm, rotate
from llm_torch.linear import Linear

# Attention over (q, k, v) that replaces the local kernel: context parallelism's distributed attention
# (``llm_core.engines.ContextParallelAttention.attention``), given the rows of this process.
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ModelConfig:
    """Shape of the model. The defaults are a tiny model (about 5M parameters with a 8k vocab)."""

    vocab_size: int = 8192
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # HF rope_parameters but rope_theta: {"rope_type": "yarn", ...}
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    value_head: bool = False  # a scalar head on the last hidden state (reward models, critics)
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # carried through HF config.json untouched

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# --- RoPE ---------------------------------------------------------------------------------------
# A RoPE scaling (position interpolation, NTK, YaRN...) is a context extension that long-context
# packages register (``llm_core.engines.RopeScaling``); the engine looks it up by the checkpoint's
# ``rope_type`` and hands it to the model. Plain RoPE (None) needs no lookup.


def default_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


class Rotary(nn.Module):
    """Cos / sin tables for rotating query and key pairs (the "rotate half" layout of HF Llama)."""

    def __init__(self, config: ModelConfig, scaling: RopeScaling | None = None):
        super().__init__()
        self.scaling = scaling
        self.head_dim, self.theta, self.max_positions = config.head_dim, config.rope_theta, config.max_seq_len
        self._set_frequencies(config.max_seq_len)

    def _set_frequencies(self, seq_len: int) -> None:
        if self.scaling is None:
            inv_freq, self.scale = default_inv_freq(self.head_dim, self.theta), 1.0
        else:  # scale: the attention factor (YaRN's temperature) multiplies cos and sin
            inv_freq, self.scale = self.scaling.inv_freq(self.head_dim, self.theta, self.max_positions, seq_len)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self._tables: tuple[torch.Tensor, torch.Tensor] | None = None
        self._length = seq_len

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: (B, T). Angles in fp32 whatever the autocast dtype: bf16 angles lose position.
        length = int(positions.max()) + 1
        if self.scaling is not None and self.scaling.dynamic and length != self._length:
            self._set_frequencies(length)  # dynamic NTK: the frequencies follow the sequence length
        cos, sin = self._table(length, positions.device)
        return cos[positions], sin[positions]

    def _table(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Cos / sin of every position up to ``length``, computed once and grown on demand."""
        if self._tables is None or self._tables[0].shape[0] < length or self._tables[0].device != device:
            size = max(length, 2 * (self._tables[0].shape[0] if self._tables else 256))
            positions = torch.arange(size, device=device, dtype=torch.float32)
            angles = positions[:, None] * self.inv_freq.to(device)
            angles = torch.cat((angles, angles), dim=-1)
            self._tables = (angles.cos() * self.scale, angles.sin() * self.scale)
        return self._tables


# --- Blocks -------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalised in fp32 (as HF does) so that bf16 training and fp32 export agree.
        return rms_norm(x, self.weight, self.eps)


class KVCache:
    """Preallocated keys and values of every layer, for generation. ``length`` tokens are filled.

    ``weights`` (optional) are the model's matrices prepared for decoding (``decode.py``): a
    forward pass with this cache multiplies by them instead of the parameters.
    """

    def __init__(self, config: ModelConfig, batch: int, max_len: int, dtype: torch.dtype,
                 device: torch.device | str = "cpu", weights: DecodeWeights | None = None):
        shape = (batch, config.num_kv_heads, max_len, config.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.length = 0
        self.weights = weights

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (to expand prompts into n samples, or drop finished rows)."""
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.heads, self.kv_heads = layer, config.num_heads, config.num_kv_heads
        self.head_dim = config.head_dim
        self.q_proj = Linear(config.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = Linear(self.heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: KVCache | None, attend: AttentionFn | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        weights = cache.weights.layers[self.layer] if cache is not None and cache.weights else None
        if weights is not None:
            q, k, v = self._fused_qkv(x, weights.qkv, cos, sin)
        else:
            q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if attend is not None:  # context parallel: this process's rows of attention over the whole sequence
            out = attend(q, k, v)
        else:  # without a mask the plain causal kernel is the fast path; with padding or a cache the
            # caller builds an explicit boolean mask (True = may attend), made additive in ``hidden``
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                                 enable_gqa=self.heads != self.kv_heads)
        return (weights.o if weights is not None else self.o_proj)(out.transpose(1, 2).reshape(b, t, -1))

    def _fused_qkv(self, x, qkv_linear, cos, sin):
        """q, k, v from one matmul, and one rotation for the query and key heads together."""
        b, t, _ = x.shape
        heads = self.heads + 2 * self.kv_heads
        qkv = qkv_linear(x).view(b, t, heads, self.head_dim).transpose(1, 2)
        qk = rotate(qkv[:, :self.heads + self.kv_heads], cos, sin)
        return qk[:, :self.heads], qk[:, self.heads:], qkv[:, self.heads + self.kv_heads:]


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, weights: LayerWeights | None = None) -> torch.Tensor:
        if weights is not None:  # decoding: gate and up fused
            gate, up = weights.gate_up(x).chunk(2, dim=-1)
            return weights.down(F.silu(gate) * up)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, cache, attend=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, attend)
        weights = cache.weights.layers[self.self_attn.layer] if cache is not None and cache.weights else None
        return x + self.mlp(self.post_attention_layernorm(x), weights)


class Backbone(nn.Module):
    """Embeddings, the decoder blocks and the final norm (HF's ``model.*`` parameters)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LlamaModel(nn.Module):
    """The causal LM. ``forward`` returns logits (B, T, vocab); ``hidden`` the final hidden states.

    ``rope_scaling`` is the built scaling that ``config.rope_scaling`` names (None: plain RoPE).
    """

    def __init__(self, config: ModelConfig, rope_scaling: RopeScaling | None = None):
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.rotary = Rotary(config, rope_scaling)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.value_head = nn.Linear(config.hidden_size, 1) if config.value_head else None
        self.apply(self._init_weights)
        init_residual_scale(self)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def hidden(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, cache: KVCache | None = None,
               attend: AttentionFn | None = None) -> torch.Tensor:
        """Final hidden states. ``positions`` default to 0..T-1 (after the cache's length); a
        context-parallel shard passes its own positions and its distributed ``attend``."""
        if positions is None:
            start = cache.length if cache is not None else 0
            positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
            positions = positions.expand(input_ids.shape[0], -1)
        cos, sin = self.rotary(positions)
        x = self.model.embed_tokens(input_ids)
        if mask is not None and mask.dtype == torch.bool:
            # Once for every layer: given a boolean mask, the attention kernel converts it to this
            # additive one at each call (60 conversions a decoding step at 30 layers).
            mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        for block in self.model.layers:
            x = block(x, cos, sin, mask, cache, attend)
        if cache is not None:
            cache.length += input_ids.shape[1]
        return self.model.norm(x)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache: KVCache | None = None,
                attend: AttentionFn | None = None) -> torch.Tensor:
        head = cache.weights.lm_head if cache is not None and cache.weights else self.lm_head
        return head(self.hidden(input_ids, positions, mask, cache, attend))

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        """Per-position scalar values (B, T) from the value head."""
        if self.value_head is None:
            raise ValueError("this model has no value head; build it with value_head=True")
        return self.value_head(hidden).squeeze(-1)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        params = {id(p): p.numel() for p in self.parameters()}  # tied weights counted once
        total = sum(params.values())
        if exclude_embeddings:
            total -= self.model.embed_tokens.weight.numel()
        return total

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 N (matmuls, forward + backward) + attention (PaLM appendix B)."""
        c = self.config
        n = self.num_parameters(exclude_embeddings=True)
        if c.tie_embeddings:
            n += self.lm_head.weight.numel()  # the output projection is a matmul all the same
        return 6 * n + 12 * c.num_layers * c.hidden_size * seq_len


def padding_mask(attention_mask: torch.Tensor, query_len: int) -> torch.Tensor:
    """Boolean (B, 1, Tq, Tk) mask: causal over the last ``query_len`` keys, and no padded keys.

    ``attention_mask`` (B, Tk) holds 1 for real tokens and 0 for padding (left padding in
    generation). A row with every key masked would give NaN, so a query always sees itself.
    """
    total = attention_mask.shape[1]
    keys = attention_mask.bool()[:, None, None, :]
    causal = torch.ones(query_len, total, dtype=torch.bool, device=attention_mask.device)
    causal = causal.tril(diagonal=total - query_len)
    mask = keys & causal
    eye = torch.zeros_like(causal)
    eye[:, total - query_len:] = torch.eye(query_len, dtype=torch.bool, device=attention_mask.device)
    return mask | eye


def init_residual_scale(model: LlamaModel) -> None:
    """GPT-2 style: shrink residual projections by 1/sqrt(2 * layers) for stable deep training."""
    std = 0.02 / math.sqrt(2 * model.config.num_layers)
    for block in model.model.layers:
        nn.init.normal_(block.self_attn.o_proj.weight, std=std)
        nn.init.normal_(block.mlp.down_proj.weight, std=std)
