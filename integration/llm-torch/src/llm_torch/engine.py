"""``TorchEngine``: the embedded policy, both a ``TrainEngine`` and a ``RolloutEngine`` (llm_core.engines).

Stages get one from the registry (``ctx.train_engine(EngineSpec(name="torch"), checkpoint=...)``);
tests and benchmarks may also build one directly from a model and a tokenizer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from llm_core.engines import ContextParallelAttention, EngineRequest, Weights
from llm_core.specs import OptimizerSpec, SamplingSpec
from llm_core.types import Sample
from llm_torch import hf, sampler
from llm_torch.batches import ENGINE_KEYS, IGNORE_INDEX, accepted_names, prepare_batch, rows_of
from llm_torch.decode import DecodeWeightsCache
from llm_torch.linear import Linear
from llm_torch.logprobs import label_logprobs, release_scratch
from llm_torch.model import LlamaModel, ModelConfig
from llm_torch.schedules import Schedule
from llm_torch.tokenizer import TextTokenizer

# Keys of a batch the engine itself consumes; every other key is handed to the loss function.
TRAINING_STATE = "training_state.pt"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TorchBackend:
    """What the registry builds for ``engines`` / ``rollout_engines`` named ``torch``."""

    def train_engine(self, request: EngineRequest) -> TorchEngine:
        return TorchEngine.from_request(request)

    def rollout_engine(self, request: EngineRequest) -> TorchEngine:
        return TorchEngine.from_request(dataclasses.replace(request, optimizer=None))


class TorchEngine:
    """A Llama-style policy with its tokenizer, AdamW optimizer (``None``: frozen) and lr schedule."""

    def __init__(self, model: LlamaModel, tokenizer: TextTokenizer | None = None, *,
                 optimizer: OptimizerSpec | None = None, total_steps: int = 1, device: str = "cpu",
                 precision: str = "fp32", seed: int = 0, context_parallel: ContextParallelAttention | None = None):
        torch.manual_seed(seed)
        self.device = resolve_device(device)
        self.precision = precision
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.optimizer_spec = optimizer
        spec = optimizer or OptimizerSpec()
        self.schedule = Schedule(spec.lr, total_steps, spec.warmup_steps, spec.schedule, spec.min_lr_ratio,
                                 spec.decay_fraction)
        self.grad_clip = spec.grad_clip
        self.step = 0  # optimizer steps taken
        # Decoding copies of the weights, kept between generate calls; dropped wherever the weights
        # may change (a fused AdamW step does not bump the version counters the cache checks).
        self._decode_weights = DecodeWeightsCache()
        self.optimizer: torch.optim.Optimizer | None = None
        if optimizer is not None:
            self.optimizer = self._build_optimizer(spec)
        else:
            self.model.requires_grad_(False).eval()
        self._trainer_model: torch.nn.Module = self.model
        self.context_parallel = context_parallel
        if context_parallel is not None:  # every process holds the whole model and a share of each sequence
            if not _distributed():
                raise ValueError("context_parallel shards sequences across a process group: run with processes > 1 "
                                 "(torchrun), after torch.distributed.init_process_group")
            for tensor in self.model.state_dict().values():
                torch.distributed.broadcast(tensor, 0)  # identical replicas, as DDP would make them
        elif _distributed() and optimizer is not None:
            from torch.nn.parallel import DistributedDataParallel

            self._trainer_model = DistributedDataParallel(self.model)

    @classmethod
    def from_request(cls, request: EngineRequest) -> TorchEngine:
        """Build what a stage asked for: a checkpoint, or a fresh model of a shape for a tokenizer,
        converted by the request's precision recipe (``recipe.apply(model)``) when it has one."""
        if request.checkpoint is not None:
            torch.manual_seed(request.seed)  # a value head the checkpoint lacks starts from the request's seed
            model, tokenizer = hf.load_checkpoint(request.checkpoint, value_head=request.value_head or None)
            if request.tokenizer is not None:
                tokenizer = TextTokenizer.load(request.tokenizer)
            # Trained longer: the config says so (except for dynamic NTK, whose max_position_embeddings
            # is the length it starts scaling from).
            dynamic = model.rotary.scaling is not None and model.rotary.scaling.dynamic
            if request.max_seq_len and request.max_seq_len > model.config.max_seq_len and not dynamic:
                model.config.max_seq_len = request.max_seq_len
        else:
            tokenizer = TextTokenizer.load(request.tokenizer)
            config = ModelConfig(vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                                 bos_id=tokenizer.bos_id, value_head=request.value_head,
                                 max_seq_len=request.max_seq_len or 2048, **request.model.model_dump())
            torch.manual_seed(request.seed)
            model = LlamaModel(config)
        if request.chat_template is not None and tokenizer is not None:
            tokenizer = tokenizer.with_chat_template(request.chat_template)
        if request.precision_recipe is not None:  # before the optimizer: it keeps the same parameters
            request.precision_recipe.apply(model)
        return cls(model, tokenizer, optimizer=request.optimizer, total_steps=request.total_steps,
                   device=request.device, precision=request.precision, seed=request.seed,
                   context_parallel=request.context_parallel)

    @property
    def is_main(self) -> bool:
        return not _distributed() or torch.distributed.get_rank() == 0

    def _build_optimizer(self, spec: OptimizerSpec):
        # No weight decay on norms and biases (1-d tensors), as GPT-2 / Llama training does.
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        # The fused kernel updates each tensor in one pass (about 5x faster than foreach on CPU);
        # other device types fall back to foreach. The optimizer state is the same either way.
        if self.device.type in ("cpu", "cuda"):
            return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, fused=True)
        return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, foreach=True)

    # --- batches ----------------------------------------------------------------------------

    def prepare(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Tensors on the device, with ``attention_mask`` and aligned ``labels`` filled in."""
        pad_id = self.tokenizer.pad_id if self.tokenizer is not None else 0
        return {key: value.to(self.device) for key, value in prepare_batch(batch, pad_id).items()}

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- TrainEngine --------------------------------------------------------------------------

    @torch.no_grad()
    def logprobs(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Per-token logprobs (B, T) of ``labels`` (fp32); 0 where the label is ignored."""
        tensors = self.prepare(batch)
        with self._autocast():
            logits = self.model(tensors["input_ids"])
        return token_logprobs(logits, tensors["labels"])

    @torch.no_grad()
    def top_logprobs(self, batch: Mapping[str, Any], k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest next-token logprobs (B, T, k) in fp32, sorted, and their ids; None: all."""
        tensors = self.prepare(batch)
        with self._autocast():
            logits = self.model(tensors["input_ids"])
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.topk(logp.shape[-1] if k is None else min(k, logp.shape[-1]), dim=-1)

    def forward_backward(self, batch: Mapping[str, Any], loss_fn: Callable[..., Any], scale: float = 1.0,
                         sync: bool = True) -> dict[str, float]:
        """Loss and gradients of one micro-batch, gradients scaled by ``scale`` and accumulated."""
        self._decode_weights.clear()  # training memory first: rollouts rebuild it after the step
        tensors, shard, weight = self.prepare(batch), {}, 1.0
        if self.context_parallel is not None:
            tensors, shard, weight = self._sequence_shard(tensors)
        self._trainer_model.train()
        no_sync = getattr(self._trainer_model, "no_sync", None)
        context = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
        with context:
            logprobs = None
            with self._autocast():
                if self._label_logprobs_only(loss_fn):  # no (B, T, V) logits at all (llm_torch.logprobs)
                    states = self.model.hidden(tensors["input_ids"], **shard)
                    logits = None
                    values = self.model.values(states) if self.model.value_head is not None else None
                    logprobs = lambda: label_logprobs(states, self.model.lm_head.weight, tensors["labels"])  # noqa: E731
                elif self.model.value_head is None:
                    logits, values = self._trainer_model(tensors["input_ids"], **shard), None
                else:  # logits and values from one pass over the backbone
                    states = self.model.hidden(tensors["input_ids"], **shard)
                    logits, values = self.model.lm_head(states), self.model.values(states)
            loss, metrics = call_loss(loss_fn, logits, tensors, values, logprobs)
            (loss * weight * scale).backward()
        metrics["loss"] = float(loss.detach()) * weight
        metrics["tokens"] = int((tensors["labels"] != IGNORE_INDEX).sum())
        return metrics

    def _label_logprobs_only(self, loss_fn: Callable[..., Any]) -> bool:
        """Whether the loss can take its ``logprobs`` from the hidden states without logits: it does not
        name ``logits`` (nor takes ``**kwargs``), the LM head is the plain one, in fp32, in one process
        (DDP needs its wrapper's forward)."""
        params = inspect.signature(loss_fn).parameters.values()
        wants_logits = any(p.name == "logits" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        plain_head = type(self.model.lm_head) is Linear  # a converted head (a precision recipe's) runs its own forward
        return not wants_logits and plain_head and self.precision == "fp32" and self._trainer_model is self.model

    def _sequence_shard(self, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any],
                                                                         float]:
        """This process's positions of every sequence (context parallelism), the model arguments
        that say so, and the loss weight that makes the processes' mean the whole batch's loss.

        The loss of a shard is a mean over its own label tokens; weighting it by world x (its
        tokens / all tokens) makes the mean over processes, and the averaged gradients, those of
        the mean over every token (exact for token-mean losses such as cross-entropy)."""
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        length = tensors["input_ids"].shape[1]
        padded = -(-length // self.context_parallel.multiple(world)) * self.context_parallel.multiple(world)
        positions = self.context_parallel.positions(padded, rank, world).to(self.device)
        fills = {"input_ids": self.tokenizer.pad_id if self.tokenizer else 0, "labels": IGNORE_INDEX}
        shard = {}
        for key, value in tensors.items():  # padding at the end changes nothing before it (causal)
            if value.dim() >= 2 and value.shape[1] == length:
                value = torch.nn.functional.pad(value, (0, padded - length), value=fills.get(key, 0))[:, positions]
            shard[key] = value
        counts = torch.tensor([float((shard["labels"] != IGNORE_INDEX).sum())], dtype=torch.float64,
                              device=self.device)
        total = counts.clone()
        torch.distributed.all_reduce(total)
        weight = world * float(counts) / max(float(total), 1.0)
        return shard, {"positions": positions.expand(shard["input_ids"].shape[0], -1),
                       "attend": self.context_parallel.attention}, weight

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step AdamW at the scheduled learning rate, zero the gradients."""
        if self.optimizer is None:
            raise RuntimeError("this engine is frozen (a reference copy); it cannot train")
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.context_parallel is not None:
            _average_gradients(params)
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        self._clip(params, grad_norm)
        self.optimizer.step()
        self._decode_weights.clear()
        self.optimizer.grad_scale = None
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"lr": lr, "grad_norm": float(grad_norm)}

    def _clip(self, params: list[torch.Tensor], grad_norm: torch.Tensor) -> None:
        """Scale the gradients by ``grad_clip / (norm + 1e-6)`` when that is below 1, as
        ``torch.nn.utils.clip_grad_norm_`` does. The fused AdamW takes the factor as its
        ``grad_scale`` (what ``torch.amp.GradScaler`` sets: the kernel divides each gradient as it
        reads it), which saves a pass over every gradient (at 135M, 540 MB read and written each
        step). Steps that need no clipping multiply by nothing (``clip_grad_norm_`` multiplies by
        1.0)."""
        if self.grad_clip is None:
            return
        coefficient = self.grad_clip / (float(grad_norm) + 1e-6)
        if coefficient >= 1.0:
            return
        if self.optimizer.defaults.get("fused"):
            self.optimizer.grad_scale = torch.tensor(1.0 / coefficient, device=self.device)
        else:
            torch.nn.utils.clip_grads_with_norm_(params, self.grad_clip, grad_norm)

    def train_step(self, batch: Mapping[str, Any], loss_fn: Callable[..., Any],
                   micro_batch_size: int | None = None) -> dict[str, float]:
        """One optimizer step over ``batch`` (split into micro-batches of that many rows)."""
        rows = len(batch["input_ids"])
        size = micro_batch_size or rows
        chunks = [slice(i, min(i + size, rows)) for i in range(0, rows, size)]
        totals: dict[str, float] = {}
        for k, chunk in enumerate(chunks):
            part = {key: rows_of(value, chunk) for key, value in batch.items()}
            share = (chunk.stop - chunk.start) / rows
            metrics = self.forward_backward(part, loss_fn, scale=share, sync=k == len(chunks) - 1)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + (value if key == "tokens" else value * share)
        if _distributed():  # report the global batch, not this rank's share
            totals = _mean_over_ranks(totals)
        return {**totals, **self.optimizer_step()}

    @torch.no_grad()
    def values(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Per-position scalar values (B, T) from the value head (reward models, critics)."""
        tensors = self.prepare(batch)
        return self.model.values(self.model.hidden(tensors["input_ids"])).float()

    def reference(self) -> TorchEngine:
        """A frozen copy of the current weights (for KL penalties); it shares nothing with self."""
        frozen = copy.deepcopy(self.model).requires_grad_(False).eval()
        return TorchEngine(frozen, self.tokenizer, device=str(self.device), precision=self.precision)

    # --- RolloutEngine ------------------------------------------------------------------------

    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int = 1,
                 sampling: SamplingSpec | None = None) -> list[list[Sample]]:
        """``n`` samples per prompt with per-token logprobs; stops at the chat end-of-turn / EOS."""
        sampling = sampling or SamplingSpec()
        tok = self.tokenizer
        was_training = self.model.training
        self.model.eval()
        try:
            with self._autocast():
                return sampler.generate(self.model, prompt_ids, n, sampling,
                                        pad_id=tok.pad_id if tok else 0,
                                        stop_ids=tok.stop_ids() if tok else (),
                                        decode=tok.decode if tok else None,
                                        decode_weights=self._decode_weights)
        finally:
            self.model.train(was_training)

    def update_weights(self, weights: Weights | TorchEngine) -> None:
        """Take new weights: an HF folder, HF-named tensors, or another ``TorchEngine`` (in process)."""
        if isinstance(weights, TorchEngine):
            weights = weights.model.state_dict()
        elif isinstance(weights, str):
            weights = hf.load_checkpoint(weights)[0].state_dict()
        self._decode_weights.clear()
        missing, unexpected = self.model.load_state_dict(dict(weights), strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and self.model.config.tie_embeddings)
                   and not k.startswith("value_head.")]
        if missing or unexpected:
            raise ValueError(f"update_weights: the weights do not fit this model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")

    def sleep(self) -> None:
        """Free the output layer's reusable training buffer (``llm_torch.logprobs``) and the
        decoding copy of the weights kept between ``generate`` calls (``llm_torch.decode``)."""
        release_scratch()
        self._decode_weights.clear()

    def wake(self) -> None:
        """See ``sleep``."""

    # --- checkpoints --------------------------------------------------------------------------

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under HF Llama names (they are HF's already, see ``model.py``)."""
        return {k: v.detach() for k, v in self.model.state_dict().items()}

    def export_hf(self, uri: str, summary: Mapping[str, Any] | None = None) -> None:
        """Weights, config and tokenizer as an HF Llama folder (no optimizer state)."""
        hf.save_checkpoint(uri, self.model, self.tokenizer,
                           {"peak_lr": self.schedule.peak_lr, "steps": self.step, **(summary or {})})

    def save(self, uri: str, extra_state: Mapping[str, Any] | None = None) -> None:
        """An HF folder plus ``training_state.pt`` (optimizer, step, RNG, ``extra_state``), written last.

        Every process may call it; in data-parallel training only rank 0 writes (the replicas are
        identical), and the others wait until the state is complete."""
        from llm_core.artifacts import atomic_open, join

        if self.is_main:
            self.export_hf(uri)
            buffer = io.BytesIO()
            torch.save({**self.training_state(), "extra": dict(extra_state or {})}, buffer)
            with atomic_open(join(uri, TRAINING_STATE), "wb") as handle:
                handle.write(buffer.getvalue())
        if _distributed():
            torch.distributed.barrier()

    def load(self, uri: str) -> dict[str, Any]:
        """Restore weights and, when present, the training state; returns the saved ``extra_state``."""
        import fsspec

        from llm_core.artifacts import exists, join

        self.update_weights(uri)
        path = join(uri, TRAINING_STATE)
        if not exists(path):
            return {}
        with fsspec.open(path, "rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), weights_only=False)
        self.load_training_state(state)
        return state.get("extra", {})

    def training_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "step": self.step,
                "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                "rng": torch.get_rng_state()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self._decode_weights.clear()
        self.model.load_state_dict(state["model"])
        self.step = int(state["step"])
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average gradients over the process group in one flat message (what DDP does, unbucketed)."""
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch.distributed.all_reduce(flat)
    flat /= torch.distributed.get_world_size()
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.grad.numel()].view_as(p.grad))
        offset += p.grad.numel()


def _mean_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics of the global batch from each rank's: means (``tokens``: the sum)."""
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(values)
    world = torch.distributed.get_world_size()
    return {k: float(v) / (1 if k == "tokens" else world) for k, v in zip(keys, values.tolist(), strict=True)}


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(labels[t] | prefix) at every position, in fp32; 0 where the label is ignored."""
    safe = labels.clamp(min=0)
    picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe[..., None]).squeeze(-1)
    return picked.masked_fill(labels == IGNORE_INDEX, 0.0)


def call_loss(loss_fn: Callable[..., Any], logits: torch.Tensor | None, tensors: Mapping[str, torch.Tensor],
              values: torch.Tensor | None,
              logprobs: Callable[[], torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Call ``loss_fn`` with the keyword arguments its signature names (all of them for ``**kwargs``).
    ``logprobs``, when given, computes them without ``logits`` (which is then None)."""
    labels = tensors["labels"]
    available: dict[str, Callable[[], Any]] = {
        "logits": lambda: logits, "labels": lambda: labels,
        "logprobs": logprobs or (lambda: token_logprobs(logits, labels)),
        "mask": lambda: (labels != IGNORE_INDEX).float(),
        "values": lambda: values,
        **{k: (lambda v=v: v) for k, v in tensors.items() if k not in ENGINE_KEYS},
    }
    wanted = accepted_names(loss_fn, available)
    result = loss_fn(**{name: available[name]() for name in wanted})
    if isinstance(result, tuple):
        loss, extra = result
        return loss, {k: float(v) for k, v in extra.items()}
    return result, {}
