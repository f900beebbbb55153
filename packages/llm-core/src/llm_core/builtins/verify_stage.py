"""``verify``: score completions with any registered verifier (offline grading, eval, reward checks).

Input records are JSONL objects with ``completion`` and optionally ``prompt`` and ``reference``.
Writes ``verdicts.jsonl`` (each record with its score, passed and reason) and pass-rate metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import fsspec
from pydantic import Field

from llm_core.builtins.filter_stage import list_input_files
from llm_core.builtins.jsonl import write_records
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult


class VerifyStageConfig(Config):
    verifier: str = Field(description="registered verifier name")
    verifier_options: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class _VerifyTask:
    shard_id: str
    source: str
    out: str
    verifier: str
    verifier_options: dict[str, Any]


def _verify_shard(task: _VerifyTask) -> dict[str, Any]:
    from llm_core.plugins import get_registries

    verifier = get_registries().verifiers.build(task.verifier, task.verifier_options)
    verdicts, rejects = [], []
    with fsspec.open(task.source, "rt", encoding="utf-8", compression="infer") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                completion = record["completion"]
            except (ValueError, KeyError, TypeError) as exc:
                rejects.append({"source": task.source, "line": line_no, "error": repr(exc), "raw": line.rstrip()})
                continue
            v = verifier.verify(record.get("prompt", ""), completion, record.get("reference"))
            verdicts.append({**record, "score": v.score, "passed": v.passed, "reason": v.reason})
    write_records(task.out + "/verdicts/" + task.shard_id + ".jsonl", verdicts)
    if rejects:
        write_records(task.out + "/rejects/" + task.shard_id + ".jsonl", rejects)
    return {"n": len(verdicts), "passed": sum(v["passed"] for v in verdicts),
            "score_sum": sum(v["score"] for v in verdicts), "rejects": len(rejects)}


class VerifyStage:
    """Runs a verifier over every completion of the ``completions`` input."""

    def __init__(self, verifier: str, verifier_options: dict[str, Any]):
        self.verifier, self.verifier_options = verifier, verifier_options

    def run(self, ctx: StageContext) -> StageResult:
        files = list_input_files(ctx.input("completions"))
        tasks = [_VerifyTask(f"shard-{i:05d}", f, ctx.stage_dir, self.verifier, self.verifier_options)
                 for i, f in enumerate(files)]
        shards = ctx.run_shards(_verify_shard, tasks, desc=f"{ctx.name}: verifying")
        n = sum(s["n"] for s in shards)
        metrics = {"completions": n, "pass_rate": sum(s["passed"] for s in shards) / n if n else 0.0,
                   "mean_score": sum(s["score_sum"] for s in shards) / n if n else 0.0,
                   "rejects": sum(s["rejects"] for s in shards)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"verdicts": ctx.path("verdicts")})
