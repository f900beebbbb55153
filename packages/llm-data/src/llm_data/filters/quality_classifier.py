"""``quality_classifier``: keep documents whose trained quality head scores at least a threshold.

The head comes from the ``train_quality_classifier`` stage (``classifier.json``); documents are
embedded in batches (``filter_batch``), and the score lands in ``metadata.quality_score``.
"""

from __future__ import annotations

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document
from llm_data.classifier import QualityHead


class QualityClassifierConfig(Config):
    classifier: str = Field(description="URI of a classifier.json written by train_quality_classifier")
    threshold: float | None = Field(None, description="None: the threshold the head was trained with")
    batch_size: int = Field(32, ge=1, description="documents embedded at a time")

    def required_modules(self) -> dict[str, str]:
        return {"sentence_transformers": "pip install 'llm-data[classifier]'"}


class QualityClassifierFilter:
    """Scores documents with the head; drops those below the threshold."""

    def __init__(self, config: QualityClassifierConfig):
        self.head = QualityHead.load(config.classifier)
        self.threshold = self.head.threshold if config.threshold is None else config.threshold
        self.batch_size = config.batch_size

    def filter(self, doc: Document) -> str | None:
        return self.filter_batch([doc])[0]

    def filter_batch(self, docs: list[Document]) -> list[str | None]:
        scores = self.head.score([d.text for d in docs], self.batch_size)
        reasons: list[str | None] = []
        for doc, score in zip(docs, scores, strict=True):
            doc.metadata["quality_score"] = round(float(score), 4)
            reasons.append(None if score >= self.threshold else "quality_classifier:low_score")
        return reasons
