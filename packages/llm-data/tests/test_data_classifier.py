"""The FineWeb-Edu style classifier: pure pieces, then a real MiniLM head, filter and judge labels."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llm_core.types import Document, Verdict
from llm_data.classifier import EDU_RUBRIC, QualityHead, f1_at, fit_ridge, judge_labels, train_head


def test_f1_at_threshold():
    labels = np.array([1, 1, 0, 0, 1.0])
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.2])
    # predicted >= 0.5: {0, 1, 3}; actual: {0, 1, 4} -> tp 2, precision 2/3, recall 2/3
    assert f1_at(scores, labels, 0.5) == pytest.approx(2 / 3)
    assert f1_at(np.zeros(3), np.ones(3), 0.5) == 0.0


def test_fit_ridge_recovers_a_linear_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = x @ np.array([1.0, -2.0, 0.0, 0.5, 3.0]) + 4.0
    weights, bias = fit_ridge(x, y, l2=1e-6)
    assert np.allclose(weights, [1.0, -2.0, 0.0, 0.5, 3.0], atol=1e-4) and bias == pytest.approx(4.0, abs=1e-4)


def test_one_sided_labels_are_an_error():
    with pytest.raises(ValueError, match="both"):
        train_head(["a", "b"], [1.0, 1.0], 0.5, 0.5, 1.0, 0, None, 32)


class LengthJudge:
    """Stands in for an LLM judge: educational value 0-5 by how many sentences a text has."""

    def __init__(self):
        self.prompts: list[str] = []

    def verify(self, prompt, completion, reference):
        self.prompts.append(prompt)
        return Verdict(score=min(5, completion.count(".")), passed=True)


def test_judge_labels_use_the_rubric_as_prompt():
    judge = LengthJudge()
    labels = judge_labels([Document("a", "One. Two. Three."), Document("b", "none")], judge, EDU_RUBRIC)
    assert labels == [3.0, 0.0] and judge.prompts == [EDU_RUBRIC, EDU_RUBRIC]


def _news_and_junk(n: int) -> tuple[list[str], list[str]]:
    from gensim.test.utils import datapath

    with open(datapath("lee_background.cor"), encoding="utf-8", errors="replace") as handle:
        news = [line.strip() for line in handle if line.strip()][:n]
    rng = random.Random(0)
    vocab = news[0].split() + ["$$$", "click", "buy", "now", "!!!", "free", "#deal", "www"]
    junk = [" ".join(rng.choices(vocab, k=60)) for _ in range(n // 2)]
    junk += ["\n".join(f"• {rng.choice(vocab)} {rng.choice(vocab)}" for _ in range(20)) for _ in range(n - n // 2)]
    return news, junk


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_head_on_minilm_embeddings_and_filter(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gensim")
    from llm_data.filters.quality_classifier import QualityClassifierConfig, QualityClassifierFilter

    news, junk = _news_and_junk(40)
    head = train_head(news + junk, [1.0] * len(news) + [0.0] * len(junk), threshold=0.5, test_fraction=0.25,
                      l2=0.1, seed=0, model_path=None, max_tokens=64)
    assert head.report["test"] == 20 and head.report["test_f1"] >= 0.9
    head.save(str(tmp_path / "classifier.json"))
    assert QualityHead.load(str(tmp_path / "classifier.json")).report == head.report
    f = QualityClassifierFilter(QualityClassifierConfig(classifier=str(tmp_path / "classifier.json")))
    docs = [Document("n", news[-1]), Document("j", junk[-1])]
    assert f.filter_batch(docs) == [None, "quality_classifier:low_score"]
    assert docs[0].metadata["quality_score"] > docs[1].metadata["quality_score"]
    with pytest.raises(FileNotFoundError, match="train_quality_classifier"):
        QualityClassifierFilter(QualityClassifierConfig(classifier=str(tmp_path / "missing.json")))
