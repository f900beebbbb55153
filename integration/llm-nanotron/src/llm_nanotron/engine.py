"""``NanotronEngine``: a ``TrainEngine`` (llm_core.engines) whose model lives in nanotron workers.

The engine object stays in the stage's process and drives ``tp * pp * dp`` worker processes
(``llm_nanotron.pool``). Why this shape rather than the whole stage under torchrun: a stage sees
one engine and one process, exactly as with the embedded engine (full batches, one rollout engine,
one writer), so switching engine is one option; and the loss runs here, in the stage's process.
Each ``forward_backward`` is: workers run the forward and return per-token log-probs (and, for a
loss that names ``logits``, the vocabulary shards of the logits); the loss is called here on
leaf tensors and differentiated; its gradients go back and the workers backpropagate them
through the pipeline. So any registered loss, a closure included, runs unchanged, and nothing but
(B, T) tensors crosses processes unless a loss asks for logits.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch

from llm_core.artifacts import atomic_open, exists, join, write_json
from llm_core.engines import EngineRequest
from llm_core.specs import OptimizerSpec
from llm_nanotron import batches, checks, convert
from llm_nanotron.options import NanotronOptions
from llm_nanotron.pool import Layout, WorkerPool, pool_for
from llm_torch import hf
from llm_torch.model import LlamaModel, ModelConfig
from llm_torch.tokenizer import TextTokenizer

STATE = "nanotron/llmt_state.pt"  # step, RNG of this process and the loop's extra state; written last


class NanotronBackend:
    """What the ``engines`` registry builds for ``nanotron``: a maker of engines of one layout."""

    def __init__(self, config: NanotronOptions):
        self.config = config

    def train_engine(self, request: EngineRequest) -> NanotronEngine:
        return NanotronEngine.from_request(self.config, request)


def describe(request: EngineRequest) -> tuple[TextTokenizer, ModelConfig, dict[str, Any] | None, dict[str, Any]]:
    """Tokenizer, model config, the checkpoint's config.json (if any) and where the weights come from."""
    if request.checkpoint is not None:
        folder = request.checkpoint
        hf_config = hf.read_json_file(join(folder, "config.json"))
        config = hf.config_from_hf(hf_config)
        tokenizer = TextTokenizer.load(request.tokenizer or folder)
        native = exists(join(folder, "nanotron/model"))
        source = {"kind": "native" if native else "hf", "path": folder}
        if request.max_seq_len and request.max_seq_len > config.max_seq_len:
            config.max_seq_len = request.max_seq_len
    else:
        hf_config = None
        tokenizer = TextTokenizer.load(request.tokenizer)
        config = ModelConfig(vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                             bos_id=tokenizer.bos_id, max_seq_len=request.max_seq_len or 2048,
                             **request.model.model_dump())
        source = {"kind": "fresh", "seed": request.seed}
    if request.chat_template is not None:
        tokenizer = tokenizer.with_chat_template(request.chat_template)
    return tokenizer, config, hf_config, source


class NanotronEngine:
    """A policy held by a pool of nanotron workers; frozen when it has no optimizer."""

    is_main = True  # the stage's process is the only one that writes

    def __init__(self, pool: WorkerPool, handle: int, ranks: list[dict[str, int]], tokenizer: TextTokenizer,
                 config: ModelConfig, options: NanotronOptions, optimizer: OptimizerSpec | None):
        self.pool, self.handle, self.ranks = pool, handle, ranks
        self.tokenizer, self.config, self.options = tokenizer, config, options
        self.optimizer_spec = optimizer
        self.step = 0
        weakref.finalize(self, pool.to_free.append, handle)  # freed in the workers with the next command

    @classmethod
    def from_request(cls, options: NanotronOptions, request: EngineRequest) -> NanotronEngine:
        checks.check_source(request)
        tokenizer, config, hf_config, source = describe(request)
        checks.check_request(options, config.to_dict(), hf_config, request)
        cuda = request.device.startswith("cuda") or (request.device == "auto" and torch.cuda.is_available())
        layout = Layout(options.tp, options.pp, options.dp, "cuda" if cuda else "cpu",
                        options.threads or checks.default_threads(options.world_size), request.precision)
        pool = pool_for(layout, options.start_timeout_s)
        handle = pool.new_handle()
        optimizer = request.optimizer.model_dump(mode="json") if request.optimizer is not None else None
        ranks = pool.call("build", {"handle": handle, "shape": config.to_dict(), "source": source,
                                    "optimizer": optimizer, "total_steps": request.total_steps})
        return cls(pool, handle, ranks, tokenizer, config, options, request.optimizer)

    # --- rows to ranks and back ---------------------------------------------------------------

    def _row_slices(self, rows: int) -> list[slice]:
        """Contiguous shares of the batch's rows, one per data-parallel replica (some may be empty)."""
        bounds = torch.linspace(0, rows, self.options.dp + 1).round().long().tolist()
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _per_rank(self, tensors: Mapping[str, torch.Tensor], **extra: Any) -> list[dict[str, Any]]:
        labels = tensors["labels"]
        if self.pool.layout.device == "cuda" and labels.shape[0] < self.options.dp:
            raise ValueError(f"a batch of {labels.shape[0]} rows cannot feed engine.options.dp = {self.options.dp} "
                             "replicas on GPU (DDP needs every replica in each backward); give each micro-batch "
                             "at least dp rows (micro_batch_size)")
        messages = []
        for rank in self.ranks:
            share = self._row_slices(labels.shape[0])[rank["dp"]]
            rows = None
            if share.stop > share.start:
                rows = {"input_ids": tensors["input_ids"][share], "label_ids": labels[share].clamp(min=0),
                        "label_mask": labels[share] != batches.IGNORE_INDEX}
            messages.append({"handle": self.handle, "rows": rows, **extra})
        return messages

    def _gather(self, replies: list[dict[str, Any]], want_logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) log-probs, and (B, T, V) logits when asked, from the last stage's replies."""
        logprobs: dict[int, torch.Tensor] = {}
        shards: dict[int, dict[int, torch.Tensor]] = {}
        for rank, reply in zip(self.ranks, replies, strict=True):
            if "logprobs" in reply:
                logprobs[rank["dp"]] = reply["logprobs"]
            if "logits" in reply:
                shards.setdefault(rank["dp"], {})[rank["tp"]] = reply["logits"]
        lp = torch.cat([logprobs[d] for d in sorted(logprobs)])
        logits = None
        if want_logits:
            logits = torch.cat([torch.cat([s[t] for t in sorted(s)], dim=-1) for _, s in sorted(shards.items())])
        return lp, logits

    # --- TrainEngine --------------------------------------------------------------------------

    def logprobs(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Per-token log-probs (B, T) of the batch's labels, fp32, 0 where ignored."""
        tensors = batches.prepare(batch, self.tokenizer.pad_id)
        replies = self.pool.call("logprobs", self._per_rank(tensors, want_logits=False))
        return self._gather(replies, False)[0]

    def top_logprobs(self, batch: Mapping[str, Any], k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest next-token log-probs (B, T, k), fp32, sorted, and their ids; None: the whole
        vocabulary. Each TP rank sends only its shard's top-k and log-sum-exp (not (B, T, V) logits)."""
        tensors = batches.prepare(batch, self.tokenizer.pad_id)
        replies = self.pool.call("top_logprobs", self._per_rank(tensors, k=k))
        shards: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
        for rank, reply in zip(self.ranks, replies, strict=True):
            if reply:
                shards.setdefault(rank["dp"], {})[rank["tp"]] = reply
        values, ids = [], []
        for _, replica in sorted(shards.items()):
            parts = [replica[t] for t in sorted(replica)]
            logsumexp = torch.stack([p["logsumexp"] for p in parts]).logsumexp(0)
            candidates = torch.cat([p["top_logits"] for p in parts], dim=-1) - logsumexp[..., None]
            top, where = candidates.topk(candidates.shape[-1] if k is None else min(k, candidates.shape[-1]), dim=-1)
            values.append(top)
            ids.append(torch.cat([p["top_ids"] for p in parts], dim=-1).gather(-1, where))
        return torch.cat(values), torch.cat(ids)

    def values(self, batch: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError("the nanotron engine has no value head; train reward models and critics "
                                  "with engine = \"torch\"")

    def forward_backward(self, batch: Mapping[str, Any], loss_fn: Callable[..., Any],
                         scale: float = 1.0) -> dict[str, float]:
        """Loss and gradients of one micro-batch, gradients scaled by ``scale`` and accumulated."""
        tensors = batches.prepare(batch, self.tokenizer.pad_id)
        extras = [k for k in tensors if k not in ("input_ids", "labels")]
        wanted = batches.loss_arguments(loss_fn, [*batches.LOSS_INPUTS, *extras])
        want_logits = "logits" in wanted
        replies = self.pool.call("forward", self._per_rank(tensors, want_logits=want_logits))
        logprobs, logits = self._gather(replies, want_logits)
        logprobs.requires_grad_(True)
        if logits is not None:
            logits.requires_grad_(True)
        labels = tensors["labels"]
        available = {"logits": logits, "labels": labels, "logprobs": logprobs,
                     "mask": (labels != batches.IGNORE_INDEX).float(), **{k: tensors[k] for k in extras}}
        result = loss_fn(**{name: available[name] for name in wanted})
        loss, metrics = (result[0], {k: float(v) for k, v in result[1].items()}) if isinstance(result, tuple) \
            else (result, {})
        if loss.requires_grad:
            (loss * scale).backward()
        self._backward(logprobs, logits)
        return {**metrics, "loss": float(loss.detach()), "tokens": int((labels != batches.IGNORE_INDEX).sum())}

    def _backward(self, logprobs: torch.Tensor, logits: torch.Tensor | None) -> None:
        grad_lp = logprobs.grad if logprobs.grad is not None else torch.zeros_like(logprobs)
        grad_logits = logits.grad if logits is not None else None  # None: the loss used logits without grad
        messages = []
        width = self.config.vocab_size // self.options.tp
        for rank in self.ranks:
            share = self._row_slices(grad_lp.shape[0])[rank["dp"]]
            vocab = slice(rank["tp"] * width, (rank["tp"] + 1) * width)
            messages.append({"handle": self.handle, "grad_logprobs": grad_lp[share],
                             "grad_logits": None if grad_logits is None else grad_logits[share][..., vocab]})
        self.pool.call("backward", messages)

    def optimizer_step(self) -> dict[str, float]:
        """Sum gradients over replicas, clip, step AdamW at the scheduled lr; ``step`` grows by one."""
        if self.optimizer_spec is None:
            raise RuntimeError("this engine is frozen (a reference copy); it cannot train")
        metrics = self.pool.call("optimizer_step", {"handle": self.handle,
                                                    "grad_clip": self.optimizer_spec.grad_clip})[0]
        self.step += 1
        return metrics

    def train_step(self, batch: Mapping[str, Any], loss_fn: Callable[..., Any],
                   micro_batch_size: int | None = None) -> dict[str, float]:
        """One optimizer step over ``batch`` (split into micro-batches of that many rows)."""
        rows = len(batch["input_ids"])
        size = micro_batch_size or rows
        totals: dict[str, float] = {}
        for start in range(0, rows, size):
            chunk = slice(start, min(start + size, rows))
            share = (chunk.stop - chunk.start) / rows
            part = {key: batches.rows_of(value, chunk) for key, value in batch.items()}
            for key, value in self.forward_backward(part, loss_fn, scale=share).items():
                totals[key] = totals.get(key, 0.0) + (value if key == "tokens" else value * share)
        return {**totals, **self.optimizer_step()}

    def reference(self) -> NanotronEngine:
        """A frozen copy of the current weights, in the same workers; training never moves it."""
        handle = self.pool.new_handle()
        ranks = self.pool.call("copy", {"handle": handle, "source_handle": self.handle})
        return NanotronEngine(self.pool, handle, ranks, self.tokenizer, self.config, self.options, None)

    # --- weights and checkpoints --------------------------------------------------------------

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under HF Llama names, whole, with the rotary layout converted back."""
        whole: dict[str, torch.Tensor] = {}
        for pieces in self.pool.call("shards", {"handle": self.handle}):
            for name, local, pairs, shape in pieces or ():
                if pairs is None:
                    whole[name] = local
                    continue
                tensor = whole.setdefault(name, torch.empty(shape, dtype=local.dtype))
                for local_slices, global_slices in pairs:
                    tensor[global_slices] = local[local_slices]
        c = self.config
        return convert.nanotron_to_hf(whole, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
                                      c.tie_embeddings)

    def export_hf(self, uri: str, summary: Mapping[str, Any] | None = None) -> None:
        """Weights, config and tokenizer as an HF Llama folder (the embedded engine's writer)."""
        model = LlamaModel(self.config)
        model.load_state_dict(self.hf_state_dict(), strict=not self.config.tie_embeddings)
        peak = self.optimizer_spec.lr if self.optimizer_spec is not None else None
        hf.save_checkpoint(uri, model, self.tokenizer, {"peak_lr": peak, "steps": self.step,
                                                        "engine": "nanotron", **(summary or {})})

    def save(self, uri: str, extra_state: Mapping[str, Any] | None = None) -> None:
        """nanotron's native sharded state under ``<uri>/nanotron/`` (weights, optimizer, lr schedule,
        each rank's RNG), config.json and the tokenizer beside it (so that the folder is also a
        checkpoint to build an engine from), and last the step, this process's RNG and ``extra_state``."""
        checks.require_local(uri)
        write_json(join(uri, "config.json"), hf.config_to_hf(self.config))
        self.tokenizer.save(uri)
        self.pool.call("save", {"handle": self.handle, "folder": uri})
        buffer = io.BytesIO()
        torch.save({"step": self.step, "rng": torch.get_rng_state(), "extra": dict(extra_state or {})}, buffer)
        with atomic_open(join(uri, STATE), "wb") as handle:
            handle.write(buffer.getvalue())

    def load(self, uri: str) -> dict[str, Any]:
        """Restore what ``save`` wrote and return its ``extra_state``; an HF folder loads weights only."""
        self.pool.call("load", {"handle": self.handle, "folder": uri})
        if not exists(join(uri, STATE)):
            return {}
        import fsspec

        with fsspec.open(join(uri, STATE), "rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), weights_only=False)
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"])
        return state["extra"]
