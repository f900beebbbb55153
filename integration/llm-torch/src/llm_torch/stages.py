"""The ``pretrain`` and ``midtrain`` stages, and the training plumbing that ``sft`` shares.

Each stage writes ``<stage>/checkpoint/`` (an HF Llama folder the next stage takes by path),
``<stage>/resume/state.pt`` (weights, AdamW, step, RNG, callbacks: a killed run continues from
it), ``metrics.jsonl`` and, for JSONL input, ``tokens/`` and ``rejects.jsonl``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fsspec.core import url_to_fs

from llm_core.builtins.jsonl import write_records
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_torch import data, hf
from llm_torch.configs import ModelShape
from llm_torch.distributed import barrier, is_main, launch, rank_and_world
from llm_torch.engine import TorchEngine
from llm_torch.model import ModelConfig
from llm_torch.tokenizer import TextTokenizer, train_bpe
from llm_torch.trainer import Trainer

log = logging.getLogger("llmt")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".ndjson")


def input_files(uri: str) -> list[str]:
    """A file, or the JSONL files of a folder (recursively, sorted): the stage's input records."""
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file or folder")
    if fs.isfile(path):
        return [uri]
    protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    found = sorted(p for p in fs.find(path) if p.endswith(JSONL_SUFFIXES) and "/_shards/" not in p
                   and not p.rsplit("/", 1)[-1].startswith(("rejects", "manifest", "metrics")))
    if not found:
        raise FileNotFoundError(f"{uri}: no JSONL files ({', '.join(JSONL_SUFFIXES)}) in this folder")
    return [protocol + p if protocol and not p.startswith(protocol) else p for p in found]


class RejectLog:
    """Collects malformed records (file, line, error) and writes them to ``rejects.jsonl``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def write(self, uri: str) -> int:
        if self.records:
            write_records(uri, self.records)
            log.warning("%d malformed records written to %s", len(self.records), uri)
        return len(self.records)


def iter_texts(ctx: StageContext, uri: str, text_key: str, rejects: RejectLog) -> Iterator[str]:
    reader = ctx.registries.readers.build("jsonl", {"text_key": text_key})
    for file in input_files(uri):
        for doc in reader.read(file, rejects):
            if doc.text:
                yield doc.text


def prepare_tokens(ctx: StageContext, uri: str, tokenizer: TextTokenizer, text_key: str,
                   tokenizer_uri: str, folder: str = "tokens") -> str:
    """A token folder for ``uri``: itself if it is one, else JSONL tokenized (once) under the stage."""
    if data.is_token_folder(uri):
        meta = data.read_meta(uri)
        if meta["vocab_size"] > tokenizer.vocab_size or meta["eos_id"] != tokenizer.eos_id:
            raise ValueError(f"{uri}/meta.json: vocab_size {meta['vocab_size']} / eos_id {meta['eos_id']} do "
                             f"not match the model's tokenizer ({tokenizer.vocab_size} / {tokenizer.eos_id}); "
                             "tokenize the data with the same tokenizer")
        return uri
    out = ctx.path(folder)
    if data.is_token_folder(out):
        return out
    rejects = RejectLog()
    data.write_token_folder(out, iter_texts(ctx, uri, text_key, rejects), tokenizer.encode_batch,
                            vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id,
                            tokenizer=tokenizer_uri)
    rejects.write(ctx.path(f"rejects-{folder}.jsonl"))
    return out


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def train(ctx: StageContext, engine: TorchEngine, batch_for_step: Callable[[int], Mapping[str, Any]],
          options: Mapping[str, Any], summary: dict[str, Any]) -> StageResult:
    """Run the loop with the stage's options, then export the checkpoint and report."""
    loss_fn = ctx.registries.losses.build(options["loss"], options["loss_options"])
    callbacks = [ctx.registries.callbacks.build(name) for name in options["callbacks"]]
    main = is_main()
    trainer = Trainer(engine, batch_for_step, loss_fn, options["steps"], options["micro_batch_size"],
                      log_metrics=lambda m, step: ctx.log_metrics(m, step=step) if main else None,
                      log_every=options["log_every"], checkpoint_every=options["checkpoint_every"],
                      state_uri=ctx.path("resume", "state.pt"), callbacks=callbacks)
    history = trainer.run()
    checkpoint = ctx.path("checkpoint")
    metrics = {"steps": engine.step}
    if history:
        metrics.update(first_loss=round(history[0]["loss"], 4), final_loss=round(history[-1]["loss"], 4))
    if main:
        engine.export_hf(checkpoint, {**summary, "loss": options["loss"], "seq_len": options["seq_len"],
                                      "result": metrics})
    barrier()
    return StageResult(metrics=metrics, artifacts={"checkpoint": checkpoint})


def run_in_processes(ctx: StageContext, options: Mapping[str, Any]) -> StageResult:
    """Train in ``options['processes']`` torchrun workers; the result is what rank 0 recorded."""
    launch(ctx, options["processes"], dict(options))
    checkpoint = ctx.path("checkpoint")
    return StageResult(metrics=hf.read_training_summary(checkpoint).get("result", {}),
                       artifacts={"checkpoint": checkpoint})


def rank_rows(source: data.PackedBlocks | data.ReplayMix, batch_size: int) -> Callable[[int], dict[str, Any]]:
    rank, world = rank_and_world()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be a multiple of processes ({world})")
    return lambda step: data.global_batch(source, step, batch_size, rank, world)


def engine_options(options: Mapping[str, Any], lr: float) -> dict[str, Any]:
    return {"device": options["device"], "precision": options["precision"], "lr": lr,
            "weight_decay": options["weight_decay"], "betas": (options["beta1"], options["beta2"]),
            "grad_clip": options["grad_clip"], "schedule": options["schedule"],
            "warmup_steps": options["warmup_steps"], "total_steps": options["steps"],
            "min_lr_ratio": options["min_lr_ratio"], "decay_fraction": options["decay_fraction"]}


class PretrainStage:
    """Train from scratch: a BPE tokenizer on the documents (unless given), then the model."""

    def __init__(self, **options: Any):
        self.options = options

    def tokenizer(self, ctx: StageContext) -> TextTokenizer:
        if "tokenizer" in ctx.inputs:
            return TextTokenizer.load(ctx.input("tokenizer"))
        documents = ctx.input("documents")
        if data.is_token_folder(documents):
            named = data.read_meta(documents)["tokenizer"]
            if not data.exists(data.join(named, "tokenizer.json")):
                raise FileNotFoundError(f"{documents}/meta.json: tokenizer {named!r} is not a folder with "
                                        "tokenizer.json; give the stage a 'tokenizer' input (such a folder)")
            return TextTokenizer.load(named)
        folder = ctx.path("tokenizer")
        if data.exists(data.join(folder, "tokenizer.json")):
            return TextTokenizer.load(folder)
        rejects = RejectLog()
        texts = iter_texts(ctx, documents, self.options["text_key"], rejects)
        limited = (t for i, t in zip(range(self.options["tokenizer_docs"]), texts, strict=False))
        tokenizer = train_bpe(limited, self.options["vocab_size"])
        tokenizer.save(folder)
        return tokenizer

    def tokenizer_uri(self, ctx: StageContext) -> str:
        if "tokenizer" in ctx.inputs:
            return ctx.input("tokenizer")
        documents = ctx.input("documents")
        return data.read_meta(documents)["tokenizer"] if data.is_token_folder(documents) else ctx.path("tokenizer")

    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        set_threads(o["threads"])
        tokenizer = self.tokenizer(ctx)
        tokens = prepare_tokens(ctx, ctx.input("documents"), tokenizer, o["text_key"], self.tokenizer_uri(ctx))
        if o["processes"] > 1:
            return run_in_processes(ctx, o)
        shape: ModelShape = o["model"]
        config = ModelConfig(vocab_size=tokenizer.vocab_size, max_seq_len=o["seq_len"],
                             eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                             **shape.model_dump())
        engine = TorchEngine(model=config, tokenizer=tokenizer, seed=ctx.seed, **engine_options(o, o["lr"]))
        blocks = data.PackedBlocks(data.TokenStream(tokens), o["seq_len"], ctx.seed)
        if is_main():
            ctx.log_metrics({"parameters": engine.model.num_parameters(), "train_tokens": len(blocks.stream),
                             "flops_per_token": engine.model.flops_per_token(o["seq_len"])})
        return train(ctx, engine, rank_rows(blocks, o["batch_size"]), o,
                     {"stage": "pretrain", "peak_lr": o["lr"]})


class MidtrainStage:
    """Continual pretraining of a checkpoint on new text, replaying a share of the earlier data."""

    def __init__(self, **options: Any):
        self.options = options

    def learning_rate(self, checkpoint: str) -> float:
        previous = hf.read_training_summary(checkpoint).get("peak_lr")
        default = previous / 10 if previous else None
        chosen = self.options["lr"]
        if chosen is None:
            if default is None:
                raise ValueError(f"{checkpoint}/llmt.json records no peak_lr (not trained here); set "
                                 "'lr' on the midtrain stage")
            return default
        if default is not None and chosen > default:
            message = (f"midtrain lr {chosen:g} is above a tenth of the previous peak ({previous:g}); "
                       "continual pretraining at a high lr tends to erase what the model learned")
            warnings.warn(message, stacklevel=2)
            log.warning(message)
        return chosen

    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        set_threads(o["threads"])
        checkpoint = ctx.input("checkpoint")
        lr = self.learning_rate(checkpoint)
        tokenizer = TextTokenizer.load(checkpoint)
        new_tokens = prepare_tokens(ctx, ctx.input("documents"), tokenizer, o["text_key"], checkpoint)
        replay_tokens = None
        if "replay" in ctx.inputs:
            replay_tokens = prepare_tokens(ctx, ctx.input("replay"), tokenizer, o["text_key"], checkpoint,
                                           "replay_tokens")
        if o["processes"] > 1:
            return run_in_processes(ctx, o)
        engine = TorchEngine(checkpoint, seed=ctx.seed, **engine_options(o, lr))
        new = data.PackedBlocks(data.TokenStream(new_tokens), o["seq_len"], ctx.seed)
        replay = None
        if replay_tokens is not None:
            replay = data.PackedBlocks(data.TokenStream(replay_tokens), o["seq_len"], ctx.seed + 1)
        elif o["replay_ratio"] > 0:
            log.warning("midtrain: replay_ratio=%s but no 'replay' input; training on new data only",
                        o["replay_ratio"])
        mix = data.ReplayMix(new, replay, o["replay_ratio"], ctx.seed)
        if is_main():
            ctx.log_metrics({"lr": lr, "replay_ratio": o["replay_ratio"] if replay else 0.0})
        return train(ctx, engine, rank_rows(mix, o["batch_size"]), o,
                     {"stage": "midtrain", "peak_lr": lr})
