"""``doremi``: domain weights for a corpus by DoReMi, with a tiny byte-level reference and proxy model.

Domains are ``metadata[domain_key]``; each contributes up to ``max_bytes_per_domain`` bytes of
text (streamed, in file order). Writes ``weights.json`` (averaged weights, per-domain reference
losses, the weight trajectory), which the ``mix`` stage reads with ``method = "input"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from llm_core.artifacts import write_json
from llm_core.config import Config
from llm_core.stage import StageContext
from llm_core.types import StageResult
from llm_data.stages.documents import iter_documents


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
    d_model: int = Field(64, ge=8)
    n_layers: int = Field(2, ge=1)
    seq_len: int = Field(64, ge=8)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(3e-3, gt=0)
    threads: int = Field(1, ge=1, description="torch threads while training (a tiny model gains nothing from more)")


def domain_bytes(uri: str, domain_key: str, cap: int) -> dict[str, np.ndarray]:
    """Each domain's text as a byte array (documents joined by newlines), up to ``cap`` bytes."""
    chunks: dict[str, list[bytes]] = {}
    sizes: dict[str, int] = {}
    for doc in iter_documents(uri):
        domain = str(doc.metadata.get(domain_key))
        if sizes.get(domain, 0) >= cap:
            continue
        data = doc.text.encode("utf-8") + b"\n"
        chunks.setdefault(domain, []).append(data)
        sizes[domain] = sizes.get(domain, 0) + len(data)
    return {d: np.frombuffer(b"".join(parts)[:cap], dtype=np.uint8) for d, parts in sorted(chunks.items())}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class DoReMiStage:
    """Plain typed fields, the same as ``DoReMiConfig``'s (the registry validates, then builds this)."""

    domain_key: str = "source"
    reference_weights: dict[str, float] = field(default_factory=dict)
    reference_steps: int = 200
    proxy_steps: int = 200
    step_size: float = 1.0
    smoothing: float = 1e-3
    max_bytes_per_domain: int = 2_000_000
    min_bytes_per_domain: int = 65_536
    d_model: int = 64
    n_layers: int = 2
    seq_len: int = 64
    batch_size: int = 16
    lr: float = 3e-3
    threads: int = 1

    def run(self, ctx: StageContext) -> StageResult:
        from llm_data.tiny_lm import TinyLMSpec, train_proxy, train_reference

        o = self
        data = domain_bytes(ctx.input("documents"), o.domain_key, o.max_bytes_per_domain)
        skipped = {d: len(b) for d, b in data.items() if len(b) < max(o.min_bytes_per_domain, 4 * (o.seq_len + 1))}
        data = {d: b for d, b in data.items() if d not in skipped}
        if len(data) < 2:
            raise ValueError(f"stage {ctx.name!r}: DoReMi needs >= 2 domains of >= {o.min_bytes_per_domain} bytes "
                             f"(min_bytes_per_domain); found {({**skipped, **{d: len(b) for d, b in data.items()}})}")
        names = list(data)
        reference_weights = np.array([o.reference_weights.get(d, 0.0) for d in names]) \
            if o.reference_weights else np.full(len(names), 1.0 / len(names))
        reference_weights = reference_weights / reference_weights.sum()
        spec = TinyLMSpec(o.d_model, o.n_layers, max(1, o.d_model // 16), o.seq_len, o.batch_size, o.lr)
        domains = [data[d] for d in names]
        with torch_threads(o.threads):
            reference, ref_losses = train_reference(domains, reference_weights, o.reference_steps, spec, ctx.seed)
            result = train_proxy(domains, reference, o.proxy_steps, spec, ctx.seed, o.step_size, o.smoothing)
        weights = {d: round(float(w), 6) for d, w in zip(names, result["weights"], strict=True)}
        weights.update(dict.fromkeys(skipped, 0.0))
        write_json(ctx.path("weights.json"), {
            "weights": weights, "domains": names, "skipped": skipped,
            "reference_weights": dict(zip(names, reference_weights.tolist(), strict=True)),
            "reference_final_loss": round(float(np.mean(ref_losses[-10:])), 4),
            "trajectory": result["history"][:: max(1, len(result["history"]) // 50)],
            "mean_excess": dict(zip(names, np.mean(result["excess"], axis=0).round(4).tolist(), strict=True))})
        metrics = {"doremi_weights": weights}
        ctx.log_metrics(metrics)
        return StageResult(metrics=metrics, artifacts={"weights": ctx.path("weights.json")})
