"""``verify``: score completions with any registered verifier (offline grading, eval, reward checks).

Input records are JSONL objects with ``completion`` and optionally ``prompt`` and ``reference``.
Writes ``verdicts.jsonl`` (each record with its score, passed and reason) and pass-rate metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from llm_core.builtins.jsonl import write_records
from llm_core.config import Config
from llm_core.data_io import RejectLog, iter_records, list_sources
from llm_core.refs import VerifierRef
from llm_core.stage import StageContext
from llm_core.types import StageResult


class VerifyStageConfig(Config):
    verifier: VerifierRef = Field(description="registered verifier, e.g. \"math\" or {name, options}")


@dataclass(frozen=True)
class _VerifyTask:
    shard_id: str
    source: Any  # a DataSource
    out: str
    verifier: VerifierRef


def _verify_shard(task: _VerifyTask) -> dict[str, Any]:
    from llm_core.plugins import get_registries

    verifier = task.verifier.build(get_registries())
    verdicts, rejects = [], RejectLog()
    for source, line, record in iter_records(task.source, rejects):
        completion = record.get("completion")
        if not isinstance(completion, str):
            rejects.add(source, line, "missing string field 'completion'", record)
            continue
        v = verifier.verify(record.get("prompt", ""), completion, record.get("reference"))
        verdicts.append({**record, "score": v.score, "passed": v.passed, "reason": v.reason})
    write_records(task.out + "/verdicts/" + task.shard_id + ".jsonl", verdicts)
    rejects.write(task.out + "/rejects/" + task.shard_id + ".jsonl")
    return {"n": len(verdicts), "passed": sum(v["passed"] for v in verdicts),
            "score_sum": sum(v["score"] for v in verdicts), "rejects": len(rejects)}


class VerifyStage:
    """Runs a verifier over every completion of the ``completions`` input."""

    def __init__(self, config: VerifyStageConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        sources = list_sources(ctx.input("completions"))
        tasks = [_VerifyTask(f"shard-{i:05d}", s, ctx.stage_dir, self.config.verifier) for i, s in enumerate(sources)]
        shards = ctx.run_shards(_verify_shard, tasks, desc=f"{ctx.name}: verifying")
        n = sum(s["n"] for s in shards)
        metrics = {"completions": n, "pass_rate": sum(s["passed"] for s in shards) / n if n else 0.0,
                   "mean_score": sum(s["score_sum"] for s in shards) / n if n else 0.0,
                   "rejects": sum(s["rejects"] for s in shards)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"verdicts": ctx.path("verdicts")})
