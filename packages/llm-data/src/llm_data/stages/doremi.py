"""``doremi``: domain weights for a corpus by DoReMi, with a small reference and proxy model.

Domains are ``metadata[domain_key]``; each contributes up to ``max_bytes_per_domain`` bytes of
text (streamed, in file order). Both models come from the engine registry (``engine``, by
default the embedded ``torch`` engine) and train through its ``train_step``; text is tokenized
byte by byte (a byte-level tokenizer with no merges, written under the stage), so no tokenizer
has to be trained. Writes ``weights.json`` (averaged weights, per-domain reference losses, the
weight trajectory), which the ``mix`` stage reads with ``method = "input"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from llm_core.artifacts import write_json
from llm_core.builtins.losses import cross_entropy
from llm_core.config import Config
from llm_core.data_io import RejectLog
from llm_core.engines import TrainEngine
from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec, ScheduleName
from llm_core.stage import StageContext
from llm_core.threads import limit_threads
from llm_core.types import StageResult
from llm_data.doremi import domain_excess_loss, doremi_update
from llm_data.stages.documents import iter_documents

EOS = "<|endoftext|>"


class DoReMiModel(ModelShape):
    """Small enough to train on a CPU in seconds: 2 layers, 64 wide."""

    hidden_size: int = Field(64, ge=8)
    intermediate_size: int = Field(256, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(4, ge=1)


class DoReMiOptimizer(OptimizerSpec):
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    schedule: ScheduleName = "constant"


class DoReMiConfig(Config):
    domain_key: str = Field("source", description="metadata field naming each document's domain")
    reference_weights: dict[str, float] = Field(default_factory=dict,
                                                description="reference model's mixture; empty: uniform")
    reference_steps: int = Field(200, ge=1)
    proxy_steps: int = Field(200, ge=1)
    step_size: float = Field(1.0, gt=0, description="eta of the exponentiated-gradient update")
    smoothing: float = Field(1e-3, ge=0, lt=1, description="c: mix with uniform")
    max_bytes_per_domain: int = Field(2_000_000, ge=1024)
    min_bytes_per_domain: int = Field(65_536, ge=1, description="smaller domains get weight 0 (too little "
                                      "text to train on; listed under 'skipped')")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="engine of both models")
    model: DoReMiModel = Field(default_factory=DoReMiModel, description="shape of reference and proxy")
    optimizer: DoReMiOptimizer = Field(default_factory=DoReMiOptimizer)
    seq_len: int = Field(64, ge=8)
    batch_size: int = Field(16, ge=2)
    threads: int = Field(1, ge=1, description="torch threads while training (a tiny model gains nothing from more)")

    def required_modules(self) -> dict[str, str]:
        return {"torch": "pip install 'llm-data[doremi]' (and an engine: llm-torch)"}


def domain_bytes(uri: str, domain_key: str, cap: int, rejects: RejectLog) -> dict[str, np.ndarray]:
    """Each domain's text as a byte array (documents joined by newlines), up to ``cap`` bytes."""
    chunks: dict[str, list[bytes]] = {}
    sizes: dict[str, int] = {}
    for doc in iter_documents(uri, rejects):
        domain = str(doc.metadata.get(domain_key))
        if sizes.get(domain, 0) >= cap:
            continue
        data = doc.text.encode("utf-8") + b"\n"
        chunks.setdefault(domain, []).append(data)
        sizes[domain] = sizes.get(domain, 0) + len(data)
    return {d: np.frombuffer(b"".join(parts)[:cap], dtype=np.uint8) for d, parts in sorted(chunks.items())}


def byte_tokenizer(folder: str) -> Any:
    """A byte-level tokenizer with no merges (256 byte tokens and EOS: one id per UTF-8 byte),
    written to ``folder`` as an HF tokenizer folder for the engine, and returned."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from llm_core.artifacts import atomic_open, join

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab[EOS] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([EOS])
    with atomic_open(join(folder, "tokenizer.json"), "w", encoding="utf-8") as handle:
        handle.write(backend.to_str())
    write_json(join(folder, "tokenizer_config.json"), {"eos_token": EOS, "pad_token": EOS})
    return backend


def sample_windows(domains: list[np.ndarray], counts: np.ndarray, seq_len: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random windows of seq_len + 1 ids: ``counts[i]`` rows from domain i. Returns (windows, domain ids)."""
    rows, ids = [], []
    for d, (data, count) in enumerate(zip(domains, counts, strict=True)):
        for start in rng.integers(0, len(data) - seq_len - 1, size=int(count)):
            rows.append(data[start: start + seq_len + 1])
            ids.append(d)
    return np.stack(rows).astype(np.int64), np.asarray(ids)


def token_losses(engine: TrainEngine, windows: np.ndarray) -> np.ndarray:
    """Per-token next-id cross-entropy (rows, seq_len) from the engine's log-probabilities."""
    return -engine.logprobs({"input_ids": windows.tolist()})[:, :-1].double().numpy()


def weighted_domain_loss(logprobs: Any, mask: Any, row_weight: Any) -> Any:
    """DoReMi's proxy objective: sum over rows of the row's weight times its mean token loss
    (the row weight is alpha of its domain over that domain's rows in the batch)."""
    per_row = -(logprobs * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return (per_row * row_weight).sum()


class DoReMiStage:
    def __init__(self, config: DoReMiConfig):
        self.config = config

    def run(self, ctx: StageContext) -> StageResult:
        c = self.config
        rejects = RejectLog()
        data = domain_bytes(ctx.input("documents"), c.domain_key, c.max_bytes_per_domain, rejects)
        rejects.write(ctx.path("rejects.jsonl"))
        skipped = {d: len(b) for d, b in data.items() if len(b) < max(c.min_bytes_per_domain, 4 * (c.seq_len + 1))}
        data = {d: b for d, b in data.items() if d not in skipped}
        if len(data) < 2:
            raise ValueError(f"stage {ctx.name!r}: DoReMi needs >= 2 domains of >= {c.min_bytes_per_domain} bytes "
                             f"(min_bytes_per_domain); found {({**skipped, **{d: len(b) for d, b in data.items()}})}")
        names = list(data)
        reference_weights = np.array([c.reference_weights.get(d, 0.0) for d in names]) \
            if c.reference_weights else np.full(len(names), 1.0 / len(names))
        reference_weights = reference_weights / reference_weights.sum()
        tokenizer = byte_tokenizer(ctx.path("tokenizer"))
        domains = [np.array(tokenizer.encode(data[d].tobytes().decode("utf-8", "ignore")).ids) for d in names]
        with limit_threads(c.threads):
            reference, ref_losses = self.train_reference(ctx, domains, reference_weights)
            result = self.train_proxy(ctx, domains, reference)
        weights = {d: round(float(w), 6) for d, w in zip(names, result["weights"], strict=True)}
        weights.update(dict.fromkeys(skipped, 0.0))
        write_json(ctx.path("weights.json"), {
            "weights": weights, "domains": names, "skipped": skipped,
            "reference_weights": dict(zip(names, reference_weights.tolist(), strict=True)),
            "reference_final_loss": round(float(np.mean(ref_losses[-10:])), 4),
            "trajectory": result["history"][:: max(1, len(result["history"]) // 50)],
            "mean_excess": dict(zip(names, np.mean(result["excess"], axis=0).round(4).tolist(), strict=True))})
        metrics = {"doremi_weights": weights, "rejects": len(rejects)}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"weights": ctx.path("weights.json")})

    def engine(self, ctx: StageContext, steps: int, seed: int) -> TrainEngine:
        c = self.config
        return ctx.train_engine(c.engine, model=c.model, tokenizer=ctx.path("tokenizer"), max_seq_len=c.seq_len + 1,
                                optimizer=c.optimizer, total_steps=steps, seed=seed)

    def train_reference(self, ctx: StageContext, domains: list[np.ndarray],
                        weights: np.ndarray) -> tuple[TrainEngine, list[float]]:
        """The reference model, trained on a fixed mixture (domain rows drawn by ``weights``)."""
        c = self.config
        engine = self.engine(ctx, c.reference_steps, ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        losses = []
        for _ in range(c.reference_steps):
            windows, _ = sample_windows(domains, rng.multinomial(c.batch_size, weights), c.seq_len, rng)
            losses.append(engine.train_step({"input_ids": windows.tolist()}, cross_entropy)["loss"])
        return engine.reference(), losses

    def train_proxy(self, ctx: StageContext, domains: list[np.ndarray], reference: TrainEngine) -> dict[str, Any]:
        """DoReMi Algorithm 1: each step updates the domain weights, then the proxy on the weighted loss."""
        c = self.config
        k = len(domains)
        engine = self.engine(ctx, c.proxy_steps, ctx.seed + 1)
        rng = np.random.default_rng(ctx.seed + 1)
        weights = np.full(k, 1.0 / k)
        history, excess_history = [], []
        per_domain = np.full(k, c.batch_size // k)  # the paper samples the minibatch uniformly
        per_domain[: c.batch_size - per_domain.sum()] += 1
        for _ in range(c.proxy_steps):
            windows, domain_ids = sample_windows(domains, per_domain, c.seq_len, rng)
            excess = domain_excess_loss(token_losses(engine, windows), token_losses(reference, windows),
                                        domain_ids, k)
            weights = doremi_update(weights, excess, c.step_size, c.smoothing)
            row_weight = (weights[domain_ids] / per_domain[domain_ids]).tolist()
            engine.train_step({"input_ids": windows.tolist(), "row_weight": row_weight}, weighted_domain_loss)
            history.append(weights.tolist())
            excess_history.append(excess.tolist())
        return {"weights": np.mean(history, axis=0), "history": history, "excess": excess_history}
