"""One worker process's share of a nanotron engine: its process groups and the models it holds.

Every worker of a pool runs the same commands in lockstep (``llm_nanotron.worker``); a command
that communicates (forward, backward, step, save) is a collective over nanotron's groups. On CPU
the pieces of nanotron's ``DistributedTrainer`` are assembled here directly (it hard-codes CUDA):
our own process group (gloo), ``ParallelContext`` with ``set_device`` a no-op, the model and its
P2P buffers on the CPU, tied parameters marked, ZeRO stage 0 without fp32 gradient accumulation.
On GPU (``llm_nanotron.gpu``) the model, optimizer and gradient accumulator come from a
``DistributedTrainer`` instead. Both then run the same forward / backward below.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from llm_nanotron import compat, convert

NATIVE = "nanotron"  # the sub-folder of a saved engine that holds nanotron's sharded state


@dataclasses.dataclass
class Slot:
    """One model held by the worker (a policy, or a frozen reference copy)."""

    model: Any
    shape: dict[str, Any]
    optimizer: Any = None  # nanotron NamedOptimizer (None: frozen)
    scheduler: Any = None  # torch LambdaLR over the optimizer
    grad_accumulator: Any = None  # GPU: nanotron's fp32 gradient accumulator
    forward_module: Any = None  # what forward runs through (DDP on GPU with dp > 1), default the model
    grad_scale: float = 1.0  # undoes DDP's averaging: the loss gradient from the client is already global
    pending: Any = None  # (pipeline state, outputs) of a forward awaiting its backward


class Runtime:
    def __init__(self, spec: dict[str, Any]):
        compat.load_nanotron()
        import torch.distributed as dist

        self.spec = spec
        self.device = torch.device(spec["device"])
        torch.set_num_threads(spec["threads"])
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.context = self._parallel_context()
        self.slots: dict[int, Slot] = {}

    def _parallel_context(self) -> Any:
        from nanotron.parallel import ParallelContext

        class CpuParallelContext(ParallelContext):
            def set_device(self) -> None:  # nanotron's calls torch.cuda.set_device
                pass

        cls = CpuParallelContext if self.device.type == "cpu" else ParallelContext
        return cls(tensor_parallel_size=self.spec["tp"], pipeline_parallel_size=self.spec["pp"],
                   data_parallel_size=self.spec["dp"])

    # --- where this rank sits -----------------------------------------------------------------

    def ranks(self) -> dict[str, int]:
        import torch.distributed as dist

        c = self.context
        return {"tp": dist.get_rank(c.tp_pg), "pp": dist.get_rank(c.pp_pg), "dp": dist.get_rank(c.dp_pg),
                "world": dist.get_rank(c.world_pg)}

    # --- building -----------------------------------------------------------------------------

    def build(self, handle: int, shape: dict[str, Any], source: dict[str, Any], optimizer: dict | None,
              total_steps: int) -> dict[str, Any]:
        """A model from ``source`` (an HF folder, a saved engine, or a fresh seeded model)."""
        if self.device.type == "cuda":
            from llm_nanotron.gpu import build_with_trainer

            slot = build_with_trainer(self, shape, source, optimizer, total_steps)
        else:
            slot = Slot(model=self.build_model(shape), shape=shape)
            self.fill(slot.model, source, shape)
            if optimizer is not None:
                slot.optimizer = make_optimizer(slot.model, optimizer)
                slot.scheduler = make_schedule(slot.optimizer, optimizer, total_steps)
        if optimizer is None:
            slot.model.requires_grad_(False)
        slot.forward_module = slot.forward_module or slot.model
        self.slots[handle] = slot
        return self.ranks()

    def build_model(self, shape: dict[str, Any]) -> Any:
        """nanotron's pieces of ``DistributedTrainer._init_model`` without its CUDA assumptions."""
        from nanotron.models.base import build_model
        from nanotron.trainer import mark_tied_parameters

        from llm_nanotron.model import LlmtLlamaForTraining, llama_config, p2p_on, parallelism

        config, par = llama_config(shape), parallelism(self.spec["tp"], self.spec["pp"], self.spec["dp"])
        dtype = torch.bfloat16 if self.spec["precision"] == "bf16" else torch.float32
        with p2p_on(self.device):
            model = build_model(lambda: LlmtLlamaForTraining(config, self.context, par), self.context,
                                dtype=dtype, device=self.device)
        mark_tied_parameters(model=model, parallel_context=self.context, parallel_config=par)
        return model

    def fill(self, model: Any, source: dict[str, Any], shape: dict[str, Any]) -> None:
        if source["kind"] == "native":
            from nanotron.serialize import load_weights

            load_weights(model=model, parallel_context=self.context, root_folder=Path(source["path"]) / NATIVE)
        else:
            load_full_state(model, hf_source_state(source, shape))

    def copy(self, handle: int, source_handle: int) -> dict[str, Any]:
        """A frozen copy of another slot's current weights (``reference()``)."""
        original = self.slots[source_handle]
        model = self.build_model(original.shape)
        with torch.no_grad():
            for (_, mine), (_, theirs) in zip(model.named_parameters(remove_duplicate=False),
                                              original.model.named_parameters(remove_duplicate=False), strict=True):
                mine.copy_(theirs)
        model.requires_grad_(False)
        self.slots[handle] = Slot(model=model, shape=original.shape, forward_module=model)
        return self.ranks()

    def free(self, handles: list[int]) -> None:
        for handle in handles:
            self.slots.pop(handle, None)

    # --- forward / backward -------------------------------------------------------------------

    def _micro_batch(self, slot: Slot, rows: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The batch as nanotron's blocks take it: tensors where they are consumed, pointers elsewhere.
        ``input_mask`` is all true (right padding): 0.4's training attention derives sequence lengths
        from it but reads unpacked tensors, so exclusion lives in ``label_mask``."""
        from nanotron.parallel.pipeline_parallel.tensor_pointer import TensorPointer

        pp = self.ranks()["pp"]
        model = slot.model

        def at(rank: int, tensor: torch.Tensor) -> Any:
            return tensor.to(self.device) if rank == pp else TensorPointer(group_rank=rank)

        ids = rows["input_ids"]
        return {"input_ids": at(model.input_pp_rank, ids),
                "input_mask": at(model.input_pp_rank, torch.ones_like(ids, dtype=torch.bool)),
                "label_ids": at(model.output_pp_rank, rows["label_ids"]),
                "label_mask": at(model.output_pp_rank, rows["label_mask"])}

    def _replies(self, slot: Slot, outputs: dict[str, Any], want_logits: bool) -> dict[str, Any]:
        """What the client gets back: log-probs from one TP rank of the last stage, logit shards
        from every TP rank of it."""
        ranks = self.ranks()
        if ranks["pp"] != slot.model.output_pp_rank:
            return {}
        reply: dict[str, Any] = {}
        if ranks["tp"] == 0:
            reply["logprobs"] = outputs["logprobs"].detach().float().cpu()
        if want_logits:
            reply["logits"] = outputs["sharded_logits"].detach().float().cpu()
        return reply

    def _evaluate(self, slot: Slot, rows: dict[str, torch.Tensor]) -> dict[str, Any]:
        slot.model.eval()
        with torch.no_grad():
            return slot.model(**self._micro_batch(slot, rows))

    def logprobs(self, handle: int, rows: dict[str, torch.Tensor] | None, want_logits: bool = False) -> dict:
        slot = self.slots[handle]
        if rows is None:  # this data-parallel replica got no rows
            return {}
        return self._replies(slot, self._evaluate(slot, rows), want_logits)

    def top_logprobs(self, handle: int, rows: dict[str, torch.Tensor] | None, k: int | None) -> dict:
        """This rank's vocabulary shard, reduced on the last stage: its ``k`` largest logits at every
        position with their global ids, and its log-sum-exp. The client merges the shards; exact,
        since the global top-k lies among the shards' top-k, and the log-sum-exps combine."""
        slot = self.slots[handle]
        if rows is None:
            return {}
        outputs = self._evaluate(slot, rows)
        if self.ranks()["pp"] != slot.model.output_pp_rank:
            return {}
        logits = outputs["sharded_logits"].float()
        width = logits.shape[-1]
        top, ids = logits.topk(width if k is None else min(k, width), dim=-1)
        return {"top_logits": top.cpu(), "top_ids": (ids + self.ranks()["tp"] * width).cpu(),
                "logsumexp": logits.logsumexp(-1).cpu()}

    def forward(self, handle: int, rows: dict[str, torch.Tensor] | None, want_logits: bool) -> dict:
        """Forward with gradients; the graph waits for :meth:`backward` with the loss's gradients."""
        from nanotron.parallel.pipeline_parallel.context_manager import attach_pipeline_state_to_model
        from nanotron.parallel.pipeline_parallel.state import PipelineTrainBatchState

        slot = self.slots[handle]
        if rows is None:
            slot.pending = None
            return {}
        slot.model.train()
        state = PipelineTrainBatchState()
        state.new_micro_batch_forward()
        with attach_pipeline_state_to_model(model=slot.model, pipeline_state=state):
            outputs = slot.forward_module(**self._micro_batch(slot, rows))
            while state.microbatches_activations_to_send:
                state.microbatches_activations_to_send.popleft()()
        slot.pending = (state, outputs)
        return self._replies(slot, outputs, want_logits)

    def backward(self, handle: int, grad_logprobs: torch.Tensor | None, grad_logits: torch.Tensor | None) -> None:
        """Backpropagate the client's d loss / d logprobs (and d loss / d logits shard) from the last
        stage through the pipeline: a surrogate sum(logprobs * grad) has exactly those gradients."""
        from nanotron.parallel.pipeline_parallel.context_manager import attach_pipeline_state_to_model

        slot = self.slots[handle]
        if slot.pending is None:
            return
        state, outputs = slot.pending
        slot.pending = None
        if self.ranks()["pp"] == slot.model.output_pp_rank:
            surrogate = (outputs["logprobs"] * grad_logprobs.to(self.device)).sum()
            if grad_logits is not None:
                surrogate = surrogate + (outputs["sharded_logits"] * grad_logits.to(self.device)).sum()
            state.register_activation_requiring_backward(surrogate * slot.grad_scale)
        with attach_pipeline_state_to_model(model=slot.model, pipeline_state=state):
            activations = state.pop_last_activations_requiring_backward()
            if activations:
                total = sum(activations)
                if slot.grad_accumulator is not None:
                    slot.grad_accumulator.backward(total)
                else:
                    total.backward()
            while state.microbatches_grads_to_send:
                state.microbatches_grads_to_send.popleft()()

    def optimizer_step(self, handle: int, grad_clip: float | None) -> dict[str, float]:
        """Sum gradients over data-parallel replicas (the client's loss gradient is already the global
        batch's) and tied copies, clip by the global norm, step AdamW, advance the schedule."""
        from nanotron import distributed as dist
        from nanotron.optim.clip_grads import clip_grad_norm
        from nanotron.parallel.tied_parameters import sync_tied_weights_gradients

        slot = self.slots[handle]
        model = slot.model
        if slot.grad_accumulator is not None and slot.forward_module is not model:  # DDP over fp32 buffers
            slot.grad_accumulator.fp32_grads_allreduce_handle.wait()
        if slot.grad_accumulator is None:
            for param in model.parameters():
                if param.requires_grad and param.grad is None:
                    param.grad = torch.zeros_like(param)  # a replica that got no rows this step
            if self.context.dp_pg.size() > 1:
                for param in model.parameters():
                    if param.requires_grad:
                        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM, group=self.context.dp_pg)
        sync_tied_weights_gradients(module=model, parallel_context=self.context,
                                    grad_accumulator=slot.grad_accumulator)
        named = [(n, p) for n, p in model.get_named_params_with_correct_tied() if p.requires_grad]
        norm = clip_grad_norm(mp_pg=self.context.mp_pg, named_parameters=named, grad_accumulator=slot.grad_accumulator,
                              max_norm=grad_clip if grad_clip is not None else float("inf"))
        lr = slot.scheduler.get_last_lr()[0]
        slot.optimizer.step()
        slot.optimizer.zero_grad()
        slot.scheduler.step()
        return {"lr": float(lr), "grad_norm": float(norm)}

    # --- weights out --------------------------------------------------------------------------

    def shards(self, handle: int) -> list[tuple[str, torch.Tensor, Any, tuple[int, ...]]] | None:
        """This rank's pieces of every parameter (data-parallel replica 0 only): name, local tensor,
        the (local, global) slice pairs and the whole shape; the client puts them together."""
        if self.ranks()["dp"] != 0:
            return None
        pieces = []
        for name, param in self.slots[handle].model.named_parameters(remove_duplicate=False):
            if param.is_sharded:
                info = param.get_sharded_info()
                pairs = [(p.local_slices, p.global_slices) for p in info.local_global_slices_pairs]
                pieces.append((name, param.detach().float().cpu(), pairs, tuple(info.unsharded_shape)))
            else:
                pieces.append((name, param.detach().float().cpu(), None, tuple(param.shape)))
        return pieces

    # --- checkpoints --------------------------------------------------------------------------

    def save(self, handle: int, folder: str) -> None:
        """nanotron's native sharded state: weights, optimizer, lr schedule, each rank's RNG."""
        from nanotron import distributed as dist
        from nanotron.random import RandomStates, get_current_random_state
        from nanotron.serialize import save_lr_scheduler, save_optimizer, save_random_states, save_weights

        slot = self.slots[handle]
        root = Path(folder) / NATIVE
        save_weights(model=slot.model, parallel_context=self.context, root_folder=root)
        if slot.optimizer is not None:
            save_optimizer(optimizer=slot.optimizer, parallel_context=self.context, root_folder=root)
            save_lr_scheduler(lr_scheduler=slot.scheduler, parallel_context=self.context, root_folder=root)
        save_random_states(random_states=RandomStates({"global": get_current_random_state()}),
                           parallel_context=self.context, root_folder=root)
        dist.barrier(self.context.world_pg)

    def load(self, handle: int, folder: str) -> None:
        """Restore what :meth:`save` wrote (optimizer and schedule when this slot trains)."""
        from nanotron.random import set_random_state
        from nanotron.serialize import load_lr_scheduler, load_optimizer, load_weights

        slot = self.slots[handle]
        root = Path(folder) / NATIVE
        if not (root / "model").exists():  # an HF folder: its weights only
            load_full_state(slot.model, hf_source_state({"kind": "hf", "path": folder}, slot.shape))
            return
        load_weights(model=slot.model, parallel_context=self.context, root_folder=root)
        if slot.optimizer is not None and (root / "optimizer").exists():
            if self.device.type == "cuda":
                load_optimizer(optimizer=slot.optimizer, parallel_context=self.context, root_folder=root)
            else:  # the same file; nanotron's loader ends with a sanity check that moves tensors to CUDA
                self._load_optimizer_on_cpu(slot, root)
            load_lr_scheduler(lr_scheduler=slot.scheduler, root_folder=root)
        if (root / "random").exists():
            set_random_state(self._random_states(root)["global"])

    def _random_states(self, root: Path) -> Any:
        """The file ``nanotron.serialize.save_random_states`` wrote for this rank. Its loader calls
        ``torch.load`` with torch's default ``weights_only=True`` (torch >= 2.6), which refuses
        nanotron's own ``RandomStates`` class; the file is this engine's own, so it is read in full."""
        r = self.ranks()
        c = self.context
        name = (f"tp-{r['tp']}-of-{c.tp_pg.size()}_dp-{r['dp']}-of-{c.dp_pg.size()}_"
                f"pp-{r['pp']}-of-{c.pp_pg.size()}.pt")
        return torch.load(root / "random" / name, weights_only=False)

    def _load_optimizer_on_cpu(self, slot: Slot, root: Path) -> None:
        import json

        from nanotron.serialize.optimizer import optimizer_filename

        saved = json.loads((root / "optimizer" / "optimizer_config.json").read_text())["parallelism"]
        now = {"tp_size": self.spec["tp"], "pp_size": self.spec["pp"], "dp_size": self.spec["dp"]}
        if any(int(saved[k]) != v for k, v in now.items()):
            raise ValueError(f"{root}: the optimizer state was saved with tp / pp / dp = {saved['tp_size']} / "
                             f"{saved['pp_size']} / {saved['dp_size']}; resume with the same engine options "
                             "(or load the weights alone from an exported HF folder)")
        path = root / "optimizer" / optimizer_filename(self.context, is_zero=False)
        slot.optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))


def make_optimizer(model: Any, spec: dict[str, Any]) -> Any:
    """AdamW as the embedded engine sets it up (no decay on 1-d tensors, fused kernel) behind
    nanotron's ``NamedOptimizer`` (whose state nanotron's serializer saves)."""
    from nanotron.optim.named_optimizer import NamedOptimizer

    named = [(n, p) for n, p in model.get_named_params_with_correct_tied() if p.requires_grad]
    groups = [{"named_params": [(n, p) for n, p in named if p.dim() >= 2], "weight_decay": spec["weight_decay"]},
              {"named_params": [(n, p) for n, p in named if p.dim() < 2], "weight_decay": 0.0}]
    return NamedOptimizer(named_params_or_groups=[g for g in groups if g["named_params"]],
                          optimizer_builder=lambda params: torch.optim.AdamW(params, lr=spec["lr"],
                                                                             betas=tuple(spec["betas"]), fused=True))


def make_schedule(optimizer: Any, spec: dict[str, Any], total_steps: int) -> Any:
    """The llmt schedule (``OptimizerSpec``) as a ``LambdaLR``, which nanotron's serializer saves."""
    from llm_torch.schedules import Schedule

    schedule = Schedule(spec["lr"], total_steps, spec["warmup_steps"], spec["schedule"], spec["min_lr_ratio"],
                        spec["decay_fraction"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer.get_base_optimizer(),
                                             lambda step: schedule.lr(step) / schedule.peak_lr)


def hf_source_state(source: dict[str, Any], shape: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Whole nanotron tensors for an HF folder, or for a fresh model seeded as the embedded engine's
    (the same initial weights for every parallel layout, and for either engine)."""
    from llm_torch import hf
    from llm_torch.model import LlamaModel, ModelConfig

    if source["kind"] == "hf":
        model, _ = hf.load_checkpoint(source["path"])
    else:
        torch.manual_seed(source["seed"])
        model = LlamaModel(ModelConfig.from_dict(shape))
    state = model.state_dict()
    return convert.hf_to_nanotron(state, shape["num_layers"], shape["hidden_size"] // shape["num_heads"],
                                  shape["tie_embeddings"])


@torch.no_grad()
def load_full_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Copy whole tensors into this rank's shards, with nanotron's own slice metadata."""
    for name, param in model.named_parameters(remove_duplicate=False):
        whole = state[name].to(param.dtype)
        if param.is_sharded:
            for pair in param.get_sharded_info().local_global_slices_pairs:
                param[pair.local_slices].copy_(whole[pair.global_slices])
        else:
            param.copy_(whole)

