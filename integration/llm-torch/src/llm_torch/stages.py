"""The ``pretrain`` and ``midtrain`` stages, and the training plumbing that ``sft`` shares.

Each stage writes ``<stage>/checkpoint/`` (an HF Llama folder the next stage takes by path),
``metrics.jsonl``, ``curves.png`` and, for text input, ``tokens/`` (an ``llmt-tokens-v1`` folder)
and ``rejects-*.jsonl``. While it trains, ``<stage>/resume/`` holds the last resumable state
(a killed run continues from it); it is removed when the stage completes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from llm_core import tokens
from llm_core.artifacts import exists, join
from llm_core.data_io import RejectLog, list_sources
from llm_core.engines import ContextParallelAttention, TrainEngine
from llm_core.plots import plot_training_curves
from llm_core.specs import ModelShape
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.training import StepPlan, Trainer
from llm_core.types import StageResult
from llm_torch import data, hf
from llm_torch.configs import MidtrainConfig, PretrainConfig, TrainingConfig
from llm_torch.distributed import barrier, is_main, launch, rank_and_world
from llm_torch.tokenizer import TextTokenizer, train_bpe

log = logging.getLogger("llmt")


def iter_texts(ctx: StageContext, uri: str, text_key: str, rejects: RejectLog) -> Iterator[str]:
    """The text of every document of an input (any registered document format), in order."""
    for source in list_sources(uri):
        entry = ctx.registries.readers.get(source.reader)
        options = {"text_key": text_key} if entry.config and "text_key" in entry.config.model_fields else {}
        for doc in entry.build(options).read(source.uri, rejects):
            if doc.text:
                yield doc.text


def prepare_tokens(ctx: StageContext, uri: str, tokenizer: TextTokenizer, text_key: str,
                   tokenizer_uri: str, folder: str = "tokens") -> str:
    """A token folder for ``uri``: itself if it is one, else its text tokenized (once) under the stage.
    Malformed records go to ``rejects-<folder>.jsonl``; an input with nothing usable is an error."""
    if tokens.is_token_folder(uri):
        meta = tokens.read_meta(uri)
        if meta["vocab_size"] > tokenizer.vocab_size or meta["eos_id"] != tokenizer.eos_id:
            raise ValueError(f"{uri}/meta.json: vocab_size {meta['vocab_size']} / eos_id {meta['eos_id']} do "
                             f"not match the model's tokenizer ({tokenizer.vocab_size} / {tokenizer.eos_id}); "
                             "tokenize the data with the same tokenizer")
        return uri
    out = ctx.path(folder)
    if tokens.is_token_folder(out):
        return out
    rejects = RejectLog()
    rejects_uri = ctx.path(f"rejects-{folder}.jsonl")
    batches = _chunks(iter_texts(ctx, uri, text_key, rejects), 256)
    documents = (ids for batch in batches for ids in tokenizer.encode_batch(batch))
    try:
        tokens.write_token_folder(out, documents, vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id,
                                  tokenizer=tokenizer_uri)
    except ValueError as exc:
        rejects.write(rejects_uri)
        raise ValueError(f"stage {ctx.name!r}: {uri} has no usable text ({len(rejects)} malformed records "
                         f"kept in {rejects_uri}; text_key is {text_key!r}): {exc}") from None
    rejects.write(rejects_uri)
    return out


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def train(ctx: StageContext, engine: TrainEngine, make_step: Callable[[int], Mapping[str, Any] | StepPlan],
          config: TrainingConfig, summary: dict[str, Any], steps: int | None = None) -> StageResult:
    """Run the one training loop with the stage's options, then export the checkpoint and report."""
    trainer = Trainer(engine, make_step, config.loss.build(ctx.registries), steps or config.steps,
                      config.micro_batch_size, metrics_log=ctx, log_every=config.log_every,
                      checkpoint_every=config.checkpoint_every, state_uri=ctx.path("resume"),
                      keep_state=config.keep_resume_state,
                      callbacks=[ref.build(ctx.registries) for ref in config.callbacks], name=ctx.name)
    trainer.run()
    checkpoint = ctx.path("checkpoint")
    metrics = trainer.summary()
    if is_main():
        engine.export_hf(checkpoint, {**summary, "loss": config.loss.name, "seq_len": config.seq_len,
                                      "result": metrics})
        if config.curves:
            plot_training_curves(ctx.store.read_metrics(ctx.name), ctx.path("curves.png"), title=ctx.name)
    barrier()
    return StageResult(metrics=metrics, artifacts={"checkpoint": checkpoint})


def run_in_processes(ctx: StageContext, config: TrainingConfig) -> StageResult:
    """Train in ``config.processes`` torchrun workers; the result is what rank 0 recorded."""
    launch(ctx, config)
    checkpoint = ctx.path("checkpoint")
    return StageResult(metrics=hf.read_training_summary(checkpoint).get("result", {}),
                       artifacts={"checkpoint": checkpoint})


def rank_rows(source: data.PackedBlocks | data.ReplayMix, batch_size: int,
              context_parallel: bool = False) -> Callable[[int], dict[str, Any]]:
    """This process's rows of each step's batch: a share of them (data parallel), or all of them when
    the engine shards every sequence across the processes instead (context parallel)."""
    rank, world = (0, 1) if context_parallel else rank_and_world()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be a multiple of processes ({world})")
    return lambda step: data.global_batch(source, step, batch_size, rank, world)


def model_size(shape: ModelShape, vocab_size: int, seq_len: int) -> dict[str, float]:
    """Parameters and training FLOPs per token of the model ``shape`` describes, whichever engine
    trains it: the model built on the meta device (no memory, nothing asked of the engine)."""
    import torch

    from llm_torch.model import LlamaModel, ModelConfig

    with torch.device("meta"):
        model = LlamaModel(ModelConfig(vocab_size=vocab_size, max_seq_len=seq_len, **shape.model_dump()))
    return {"parameters": model.num_parameters(), "flops_per_token": model.flops_per_token(seq_len)}


def context_parallel(ctx: StageContext, config: TrainingConfig) -> ContextParallelAttention | None:
    """The attention that shards sequences across the processes, when the stage names one."""
    if config.context_parallel is None:
        return None
    attention = config.context_parallel.build(ctx.registries)
    if not isinstance(attention, ContextParallelAttention):
        raise TypeError(f"stage {ctx.name!r}: context_parallel {config.context_parallel.name!r} is not a "
                        "context-parallel attention (e.g. 'ring_attention' from llm-longctx)")
    return attention


class PretrainStage:
    """Train from scratch: a BPE tokenizer on the documents (unless given), then the model."""

    def __init__(self, config: PretrainConfig):
        self.config = config

    def tokenizer_uri(self, ctx: StageContext) -> str:
        """The tokenizer folder: the ``tokenizer`` input, the token folder's, or one trained here."""
        if "tokenizer" in ctx.inputs:
            return ctx.input("tokenizer")
        documents = ctx.input("documents")
        if tokens.is_token_folder(documents):
            named = tokens.read_meta(documents)["tokenizer"]
            if not exists(join(named, "tokenizer.json")):
                raise FileNotFoundError(f"{documents}/meta.json: tokenizer {named!r} is not a folder with "
                                        "tokenizer.json; give the stage a 'tokenizer' input (such a folder)")
            return named
        folder = ctx.path("tokenizer")
        if not exists(join(folder, "tokenizer.json")):
            rejects = RejectLog()
            texts = iter_texts(ctx, documents, self.config.text_key, rejects)
            limited = (t for _, t in zip(range(self.config.tokenizer_docs), texts, strict=False))
            train_bpe(limited, self.config.vocab_size).save(folder)
        return folder

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        with limit_threads(c.threads):
            tokenizer_uri = self.tokenizer_uri(ctx)
            tokenizer = TextTokenizer.load(tokenizer_uri)
            token_folder = prepare_tokens(ctx, ctx.input("documents"), tokenizer, c.text_key, tokenizer_uri)
            if c.processes > 1:
                return run_in_processes(ctx, c)
            engine = ctx.train_engine(c.engine, model=c.model, tokenizer=tokenizer_uri, max_seq_len=c.seq_len,
                                      optimizer=c.optimizer, total_steps=c.steps,
                                      context_parallel=context_parallel(ctx, c))
            blocks = data.PackedBlocks(tokens.TokenStream(token_folder), c.seq_len, ctx.seed)
            if is_main():
                ctx.log_metrics({**model_size(c.model, tokenizer.vocab_size, c.seq_len),
                                 "train_tokens": len(blocks.stream)})
            return train(ctx, engine, rank_rows(blocks, c.batch_size, c.context_parallel is not None), c,
                         {"stage": "pretrain", "peak_lr": c.optimizer.lr})


class MidtrainStage:
    """Continual pretraining of a checkpoint on new text, replaying a share of the earlier data."""

    def __init__(self, config: MidtrainConfig):
        self.config = config

    def learning_rate(self, checkpoint: str) -> float:
        """The peak lr: ``optimizer.lr`` when set, else a tenth of the previous stage's peak."""
        previous = hf.read_training_summary(checkpoint).get("peak_lr")
        default = previous / 10 if previous else None
        if "lr" not in self.config.optimizer.model_fields_set:
            if default is None:
                raise ValueError(f"{checkpoint}/llmt.json records no peak_lr (not trained here); set "
                                 "optimizer.lr on the midtrain stage")
            return default
        chosen = self.config.optimizer.lr
        if default is not None and chosen > default:
            message = (f"midtrain lr {chosen:g} is above a tenth of the previous peak ({previous:g}); "
                       "continual pretraining at a high lr tends to erase what the model learned")
            warnings.warn(message, stacklevel=2)
            log.warning(message)
        return chosen

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        with limit_threads(c.threads):
            checkpoint = ctx.input("checkpoint")
            lr = self.learning_rate(checkpoint)
            tokenizer = TextTokenizer.load(checkpoint)
            new_tokens = prepare_tokens(ctx, ctx.input("documents"), tokenizer, c.text_key, checkpoint)
            replay_tokens = None
            if "replay" in ctx.inputs:
                replay_tokens = prepare_tokens(ctx, ctx.input("replay"), tokenizer, c.text_key, checkpoint,
                                               "replay_tokens")
            if c.processes > 1:
                return run_in_processes(ctx, c)
            engine = ctx.train_engine(c.engine, checkpoint=checkpoint, max_seq_len=c.seq_len,
                                      optimizer=c.optimizer.model_copy(update={"lr": lr}), total_steps=c.steps,
                                      context_parallel=context_parallel(ctx, c))
            new = data.PackedBlocks(tokens.TokenStream(new_tokens), c.seq_len, ctx.seed)
            replay = None
            if replay_tokens is not None:
                replay = data.PackedBlocks(tokens.TokenStream(replay_tokens), c.seq_len, ctx.seed + 1)
            elif c.replay_ratio > 0:
                log.warning("midtrain: replay_ratio=%s but no 'replay' input; training on new data only",
                            c.replay_ratio)
            mix = data.ReplayMix(new, replay, c.replay_ratio, ctx.seed)
            if is_main():
                ctx.log_metrics({"lr": lr, "replay_ratio": c.replay_ratio if replay else 0.0})
            return train(ctx, engine, rank_rows(mix, c.batch_size, c.context_parallel is not None), c,
                         {"stage": "midtrain", "peak_lr": lr})
