"""``mix``: sample a token budget of documents per domain and phase, following a mixture or curriculum.

Domains are the values of ``metadata[domain_key]``. Pass 1 counts each domain's tokens (UTF-8
bytes / ``bytes_per_token``); pass 2 streams the documents again and writes each one a number of
times drawn so that every domain gets its budget in expectation (fewer: subsampled; more:
repeated, and the epochs are reported). Both passes are sharded by input file and resumable.
Weights come from ``weights`` (static), ``temperature`` over domain sizes, or a ``weights`` input
(a DoReMi stage's ``weights.json``).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from llm_core.artifacts import atomic_open, join, read_json, write_json
from llm_core.config import Config
from llm_core.data_io import RejectLog, list_sources
from llm_core.refs import ReaderRef
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_data.mixing import (
    Phase,
    cap_epochs,
    normalize,
    phase_budgets,
    temperature_weights,
    with_replay,
    wsd_curriculum,
)


class PhaseSpec(Config):
    until_tokens: int = Field(ge=1, description="the phase lasts until this many tokens in all")
    weights: dict[str, float] = Field(description="domain -> weight in this phase")


class MixConfig(Config):
    domain_key: str = Field("source", description="metadata field naming each document's domain")
    method: Literal["static", "temperature", "input"] = Field(
        "static", description="static: the weights option; temperature: over domain sizes; input: the "
        "'weights' input (weights.json of a doremi stage)")
    weights: dict[str, float] = Field(default_factory=dict, description="static weights")
    temperature: float = Field(1.0, gt=0, description="method temperature: p ~ size ** (1/T)")
    total_tokens: int | None = Field(None, ge=1, description="tokens to produce; None: the corpus size")
    phases: list[PhaseSpec] = Field(default_factory=list, description="explicit curriculum (overrides method)")
    anneal_weights: dict[str, float] = Field(default_factory=dict,
                                             description="late anneal mixture over the WSD decay phase")
    decay_fraction: float = Field(0.2, gt=0, lt=1, description="share of tokens in the WSD decay / anneal")
    replay_weights: dict[str, float] = Field(default_factory=dict, description="old mixture to replay")
    replay_ratio: float = Field(0.0, ge=0, le=1, description="share of tokens replaying replay_weights")
    bytes_per_token: float = Field(4.0, gt=0, description="token estimate: UTF-8 bytes / this")
    max_epochs: float | None = Field(4.0, gt=0, description="cap on repeats of a domain in each phase; the "
                                     "freed weight goes to the other domains. None: no cap")

    @model_validator(mode="after")
    def _weights_given(self) -> MixConfig:
        if self.method == "static" and not self.weights and not self.phases:
            raise ValueError("method 'static' needs weights (or phases)")
        return self


@dataclass(frozen=True)
class CountTask:
    shard_id: str
    source: str
    reader: str
    domain_key: str
    bytes_per_token: float
    rejects_uri: str


@dataclass(frozen=True)
class SampleTask:
    shard_id: str
    source: str
    reader: str
    domain_key: str
    bytes_per_token: float
    out_dir: str
    rates: tuple[dict[str, float], ...]  # per phase: expected copies of each document, by domain
    seed: int


def _read(source: str, reader: str, rejects: RejectLog):
    from llm_core.plugins import get_registries

    return ReaderRef(name=reader).build(get_registries()).read(source, rejects)


def count_shard(task: CountTask) -> dict[str, Any]:
    """Tokens per domain of one source; its malformed records are written out here, once (the
    sampling pass reads the same records and skips the same ones)."""
    tokens: Counter = Counter()
    rejects = RejectLog()
    for doc in _read(task.source, task.reader, rejects):
        tokens[str(doc.metadata.get(task.domain_key))] += round(len(doc.text.encode()) / task.bytes_per_token)
    rejects.write(task.rejects_uri)
    return {"domains": dict(tokens), "rejects": len(rejects)}


def sample_shard(task: SampleTask) -> list[dict[str, int]]:
    rng = random.Random(f"{task.seed}:{task.shard_id}")
    written: list[Counter] = [Counter() for _ in task.rates]
    with contextlib.ExitStack() as stack:
        outputs = [stack.enter_context(atomic_open(join(task.out_dir, f"phase-{p}", f"{task.shard_id}.jsonl.gz"),
                                                   "wt", encoding="utf-8", compression="infer"))
                   for p in range(len(task.rates))]
        for doc in _read(task.source, task.reader, RejectLog()):  # rejects: counted by count_shard
            domain = str(doc.metadata.get(task.domain_key))
            tokens = round(len(doc.text.encode()) / task.bytes_per_token)
            line = json.dumps(doc.to_dict(), ensure_ascii=False) + "\n"
            for phase, rates in enumerate(task.rates):
                rate = rates.get(domain, 0.0)
                copies = int(rate) + (rng.random() < rate - int(rate))  # expected copies == rate
                outputs[phase].write(line * copies)
                written[phase][domain] += copies * tokens
    return [dict(c) for c in written]


class MixStage:
    def __init__(self, config: MixConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        o = self.config
        sources = list_sources(ctx.input("documents"))
        counts = ctx.run_shards(count_shard, [
            CountTask(f"count-{i:05d}", s.uri, s.reader, o.domain_key, o.bytes_per_token,
                      ctx.path("rejects", f"count-{i:05d}.jsonl")) for i, s in enumerate(sources)],
            desc=f"{ctx.name}: counting tokens per domain")
        sizes: Counter = Counter()
        for c in counts:
            sizes.update(c["domains"])
        phases = self._phases(ctx, dict(sizes))
        missing = sorted({d for p in phases for d, w in p.weights.items() if w > 0 and not sizes.get(d)})
        if missing:
            raise ValueError(f"stage {ctx.name!r}: domains {missing} have weight but no documents; domains "
                             f"found under metadata.{o.domain_key}: {sorted(sizes)}")
        if o.max_epochs is not None:
            phases = self._capped(phases, dict(sizes), o.max_epochs)
        budgets = phase_budgets(phases)
        rates = tuple({d: (b / sizes[d] if sizes.get(d) else 0.0) for d, b in budget.items()} for budget in budgets)
        out = ctx.path("mixture")
        written = ctx.run_shards(sample_shard, [
            SampleTask(f"{i:05d}", s.uri, s.reader, o.domain_key, o.bytes_per_token, out, rates, ctx.seed)
            for i, s in enumerate(sources)], desc=f"{ctx.name}: sampling the mixture")
        report = self._report(phases, budgets, dict(sizes), written)
        write_json(ctx.path("mixture.json"), report)
        metrics = {"domain_tokens": dict(sizes), "phases": len(phases), "rejects": sum(c["rejects"] for c in counts),
                   "tokens_written": sum(sum(p.values()) for p in report["written"])}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"mixture": out, "report": ctx.path("mixture.json")})

    def _phases(self, ctx: StageContext, sizes: dict[str, int]) -> list[Phase]:
        o = self.config
        if o.phases:
            return [Phase(p.until_tokens, normalize(p.weights)) for p in o.phases]
        if o.method == "static":
            weights = normalize(o.weights)
        elif o.method == "temperature":
            weights = temperature_weights(sizes, o.temperature)
        else:
            weights = normalize(read_json(_weights_uri(ctx.input("weights")))["weights"])
        if o.replay_ratio > 0:
            weights = with_replay(weights, o.replay_weights, o.replay_ratio)
        total = o.total_tokens or sum(sizes.values())
        if o.anneal_weights:
            return wsd_curriculum(total, o.decay_fraction, weights, o.anneal_weights)
        return [Phase(total, weights)]

    @staticmethod
    def _capped(phases: list[Phase], sizes: dict[str, int], max_epochs: float) -> list[Phase]:
        capped, start = [], 0
        for phase in phases:
            capped.append(Phase(phase.until_tokens,
                                cap_epochs(phase.weights, sizes, phase.until_tokens - start, max_epochs)))
            start = phase.until_tokens
        return capped

    @staticmethod
    def _report(phases: list[Phase], budgets: list[dict[str, int]], sizes: dict[str, int],
                written: list[list[dict[str, int]]]) -> dict[str, Any]:
        totals = [Counter() for _ in phases]
        for shard in written:
            for p, counts in enumerate(shard):
                totals[p].update(counts)
        return {"domain_tokens": sizes,
                "phases": [{"until_tokens": p.until_tokens, "weights": p.weights, "budget": b,
                            "epochs": {d: round(b[d] / sizes[d], 3) for d in b if sizes.get(d)}}
                           for p, b in zip(phases, budgets, strict=True)],
                "written": [dict(t) for t in totals]}


def _weights_uri(uri: str) -> str:
    return uri if uri.endswith(".json") else uri.rstrip("/") + "/weights.json"
