"""The GPU path: nanotron's own ``DistributedTrainer`` builds the model, optimizer and gradient accumulator.

On CUDA (NCCL) a trainable model comes from ``DistributedTrainer`` with a config written from the
engine request: the model in the request's dtype (bf16: fp32 gradient accumulation and master
weights, nanotron's mixed precision), ZeRO stage 0, DDP over ``dp`` replicas, nanotron's AdamW
(its weight decay applies to every tensor, unlike the CPU path and the embedded engine, which skip
1-d tensors). Its weights are loaded where nanotron loads them (``_load_model_checkpoint``, before
the optimizer copies them), from the same sources as on CPU. The llmt schedule replaces nanotron's
so that the learning rate follows ``OptimizerSpec``. Forward and backward are the runtime's.
Frozen models (references) are built directly, in the same dtype. Untested in CI (no GPU there):
``tools/nanotron_gpu_check.py`` runs this path when a GPU is available.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from llm_nanotron.runtime import Runtime, Slot


def trainer_config(runtime: Runtime, shape: dict[str, Any], spec: dict[str, Any], total_steps: int,
                   folder: Path) -> Any:
    from nanotron import config as nc

    from llm_nanotron.model import llama_config, parallelism

    dtype = "bfloat16" if runtime.spec["precision"] == "bf16" else "float32"
    schedule = nc.LRSchedulerArgs(learning_rate=spec["lr"], lr_warmup_steps=0, lr_warmup_style="linear",
                                  lr_decay_style="linear", min_decay_lr=spec["lr"])  # replaced, see build
    return nc.Config(
        general=nc.GeneralArgs(project="llmt", run="engine", seed=0),
        parallelism=parallelism(runtime.spec["tp"], runtime.spec["pp"], runtime.spec["dp"]),
        model=nc.ModelArgs(model_config=llama_config(shape), init_method=nc.RandomInit(std=0.02), dtype=dtype,
                           make_vocab_size_divisible_by=1),
        tokenizer=nc.TokenizerArgs(),
        checkpoints=nc.CheckpointsArgs(checkpoints_path=folder / "checkpoints", checkpoint_interval=10**9),
        logging=nc.LoggingArgs(log_level="warning", log_level_replica="warning"),
        tokens=nc.TokensArgs(sequence_length=shape["max_seq_len"], train_steps=max(total_steps, 1) + 1,
                             micro_batch_size=1, batch_accumulation_per_replica=1),
        optimizer=nc.OptimizerArgs(zero_stage=0, weight_decay=spec["weight_decay"], clip_grad=spec["grad_clip"],
                                   accumulate_grad_in_fp32=dtype == "bfloat16", adam_eps=1e-8,
                                   adam_beta1=spec["betas"][0], adam_beta2=spec["betas"][1],
                                   torch_adam_is_fused=True, learning_rate_scheduler=schedule))


def build_with_trainer(runtime: Runtime, shape: dict[str, Any], source: dict[str, Any], optimizer: dict | None,
                       total_steps: int) -> Slot:
    if optimizer is None:
        model = runtime.build_model(shape)
        runtime.fill(model, source, shape)
        return Slot(model=model, shape=shape)
    from nanotron.trainer import DistributedTrainer
    from torch.nn.parallel import DistributedDataParallel

    from llm_nanotron.model import LlmtLlamaForTraining
    from llm_nanotron.runtime import make_schedule

    class LlmtTrainer(DistributedTrainer):
        def _load_model_checkpoint(self, model: Any) -> Any:  # before the optimizer copies the weights
            self.init_checkpoint_path, self.param_shard_metadata = None, None
            unwrapped = model.module if isinstance(model, DistributedDataParallel) else model
            runtime.fill(unwrapped, source, shape)
            return model

    folder = Path(tempfile.mkdtemp(prefix="llmt-nanotron-"))
    config_file = folder / "config.yaml"
    trainer_config(runtime, shape, optimizer, total_steps, folder).save_as_yaml(str(config_file))
    trainer = LlmtTrainer(str(config_file), model_class=LlmtLlamaForTraining)
    runtime.context = trainer.parallel_context
    ddp = isinstance(trainer.model, DistributedDataParallel)
    return Slot(model=trainer.unwrapped_model, shape=shape, optimizer=trainer.optimizer,
                scheduler=make_schedule(trainer.optimizer, optimizer, total_steps),
                grad_accumulator=trainer.grad_accumulator, forward_module=trainer.model,
                grad_scale=float(runtime.spec["dp"]) if ddp else 1.0)  # DDP averages; the gradient is global

