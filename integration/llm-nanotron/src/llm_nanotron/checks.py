"""What the nanotron engine checks before it starts a process: layout, model, precision, sources.

Each problem names the option or the checkpoint field and the fix. All are collected and raised
together as one :class:`EngineSetupError`, so that nothing is spawned for a request that cannot run.
"""

from __future__ import annotations

import os
from typing import Any

from llm_core.artifacts import exists, join
from llm_core.engines import EngineRequest
from llm_nanotron import compat
from llm_nanotron.options import NanotronOptions

ROPE_BASE = 10000.0  # nanotron 0.4's rotary embedding has a fixed base


class EngineSetupError(ValueError):
    """A nanotron engine request that cannot run, with every reason and its fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("the nanotron engine cannot start:\n" + "\n".join(f"  - {p}" for p in problems))


def check_source(request: EngineRequest) -> None:
    """The checkpoint or tokenizer folder exists, and every worker can reach it."""
    folder = request.checkpoint if request.checkpoint is not None else request.tokenizer
    require_local(folder)
    problems = []
    if request.checkpoint is not None and not exists(join(folder, "config.json")):
        problems.append(f"{folder}: no config.json; the checkpoint must be an HF Llama folder (a stage's "
                        "<stage>/checkpoint) or a folder saved by the nanotron engine; check the stage's "
                        "'checkpoint' input")
    elif request.checkpoint is None and not exists(join(folder, "tokenizer.json")):
        problems.append(f"{folder}: no tokenizer.json; a fresh model needs a tokenizer folder")
    if problems:
        raise EngineSetupError(problems)


def require_local(folder: str) -> None:
    """The workers read and write checkpoints with plain file I/O (nanotron's serializer)."""
    if "://" in folder and not folder.startswith("file://"):
        raise EngineSetupError([f"{folder}: the nanotron engine's worker processes read and write checkpoints "
                                "on the local file system; use a local run root (--root runs/NAME), not a "
                                "remote or memory:// URI"])


def check_request(options: NanotronOptions, shape: dict[str, Any], hf_config: dict[str, Any] | None,
                  request: EngineRequest) -> None:
    """Every reason this layout / model / precision cannot run (``shape``: ModelConfig fields)."""
    problems = layout_problems(options, shape, request.device) + model_problems(shape, hf_config)
    if request.value_head:
        problems.append("value_head: the nanotron engine has no value head (reward models, PPO critics); use "
                        "engine = \"torch\" for that stage")
    if request.precision_recipe is not None:
        problems.append(precision_recipe_problem(request.precision_recipe))
    if request.precision == "bf16" and not request.device.startswith("cuda"):
        problems.append("engine.precision = \"bf16\" runs through nanotron's DistributedTrainer on GPU only; on "
                        "CPU use precision = \"fp32\" (or engine = \"torch\", which autocasts bf16 on CPU)")
    if request.precision == "fp32" and request.device.startswith("cuda") and compat.flash_attn_is_installed():
        problems.append("engine.precision = \"fp32\" on CUDA: flash-attn's kernels take bf16 / fp16 only; set "
                        "precision = \"bf16\" (or uninstall flash-attn to use the pure-torch attention)")
    if problems:
        raise EngineSetupError(problems)


def precision_recipe_problem(recipe: Any) -> str:
    """Why a precision recipe is refused rather than applied. A recipe swaps ``nn.Linear`` layers for
    ones that compute in FP8 / MX / fake-quantized integers; nanotron's projections are its own
    tensor-parallel linears (``nn.Linear`` subclasses whose forward all-gathers or all-reduces across
    ranks), so the swap would keep each rank's weight shard and drop that communication: wrong
    outputs under ``tp > 1``, without an error. Refusing is the honest answer until a recipe knows
    nanotron's layers."""
    return (f"engine.precision_recipe ({type(recipe).__name__}): the nanotron engine does not apply precision "
            "recipes (FP8, MX, QAT): they swap nn.Linear layers, and nanotron's tensor-parallel linears would "
            "lose their cross-rank communication; remove precision_recipe from this stage's engine, or train "
            "the stage with engine = \"torch\", which applies it")


def layout_problems(options: NanotronOptions, shape: dict[str, Any], device: str) -> list[str]:
    problems = []
    world = options.world_size
    layout = f"tp * pp * dp = {options.tp} * {options.pp} * {options.dp} = {world}"
    if _distributed_here():
        problems.append("this process is already one of a torch.distributed group (processes > 1?); the nanotron "
                        "engine launches its own tp * pp * dp processes: set processes = 1 on the stage")
    if device.startswith("cuda"):
        gpus = _cuda_devices()
        if world > gpus:
            problems.append(f"engine.options: {layout} processes need one GPU each, but {gpus} are visible; lower "
                            "tp, pp or dp to fit (or set CUDA_VISIBLE_DEVICES)")
    elif device not in ("cpu", "auto"):
        problems.append(f"engine.device = {device!r}: the nanotron engine runs on \"cpu\" (gloo) or \"cuda\" (NCCL)")
    for name, count, what in (("num_heads", shape["num_heads"], "attention heads"),
                              ("num_kv_heads", shape["num_kv_heads"], "key / value heads"),
                              ("intermediate_size", shape["intermediate_size"], "MLP columns"),
                              ("vocab_size", shape["vocab_size"], "vocabulary rows")):
        if count % options.tp:
            problems.append(f"engine.options.tp = {options.tp} does not divide the model's {what} ({name} = "
                            f"{count}); pick tp among the common divisors of num_heads, num_kv_heads, "
                            "intermediate_size and vocab_size (a tokenizer's vocab_size can be chosen so)")
    if options.pp > shape["num_layers"]:
        problems.append(f"engine.options.pp = {options.pp} is more pipeline stages than the model has layers "
                        f"({shape['num_layers']}); use pp <= num_layers")
    return problems


def model_problems(shape: dict[str, Any], hf_config: dict[str, Any] | None) -> list[str]:
    """Model features nanotron 0.4's LlamaConfig cannot represent."""
    problems = []
    if float(shape["rope_theta"]) != ROPE_BASE:
        problems.append(f"rope_theta = {shape['rope_theta']:g}: nanotron 0.4 trains with a fixed RoPE base of "
                        "10,000 (its LlamaConfig has no rope_theta); keep model.rope_theta = 10000 or train this "
                        "model with engine = \"torch\"")
    if shape.get("rope_scaling"):
        problems.append(f"rope_scaling = {shape['rope_scaling']}: nanotron 0.4 has no RoPE scaling; use engine = "
                        "\"torch\" for long-context models")
    config = hf_config or {}
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            problems.append(f"config.json: {key} = true; nanotron 0.4's Llama has no biases in its projections; "
                            "use engine = \"torch\" for this checkpoint")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"config.json: hidden_act = {config['hidden_act']!r}; the nanotron engine runs SwiGLU "
                        "(silu) Llamas only")
    head_dim = config.get("head_dim")
    if head_dim and head_dim * shape["num_heads"] != shape["hidden_size"]:
        problems.append(f"config.json: head_dim = {head_dim} with hidden_size {shape['hidden_size']} and "
                        f"{shape['num_heads']} heads; nanotron 0.4 needs head_dim = hidden_size / num_heads")
    return problems


def _distributed_here() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_threads(world_size: int) -> int:
    return max(1, (os.cpu_count() or 1) // world_size)
