"""``toxicity``: a word-list filter, optionally backed by the ``alt-profanity-check`` classifier.

The word list (shipped, or the user's) drops a document when toxic words make up more than a
fraction of its words; the classifier, when switched on, drops one whose mean per-line
probability of profanity is above a threshold.
"""

from __future__ import annotations

import re

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document
from llm_data.filters.url_filter import load_list

_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")


class ToxicityConfig(Config):
    words: list[str] = Field([], description="extra toxic words (lower case)")
    use_default_list: bool = Field(True, description="also use the shipped word list")
    max_toxic_word_ratio: float = Field(0.01, ge=0, le=1, description="largest tolerated share of toxic words")
    min_toxic_words: int = Field(3, ge=1, description="fewest toxic words before the ratio applies")
    use_classifier: bool = Field(False, description="also run alt-profanity-check (needs llm-data[toxicity])")
    classifier_threshold: float = Field(0.5, ge=0, le=1, description="highest tolerated mean probability")

    def required_modules(self) -> dict[str, str]:
        return {"profanity_check": "pip install 'llm-data[toxicity]'"} if self.use_classifier else {}


class ToxicityFilter:
    """Drops documents dense in toxic words, and (optionally) those a classifier finds profane."""

    def __init__(self, config: ToxicityConfig):
        vocabulary = {w.lower() for w in config.words or []}
        if config.use_default_list:
            vocabulary.update(load_list("toxic_words.txt"))
        self.vocabulary = frozenset(vocabulary)
        self.max_ratio, self.min_words = config.max_toxic_word_ratio, config.min_toxic_words
        self.threshold = config.classifier_threshold
        self.classifier = None
        if config.use_classifier:
            from profanity_check import predict_prob

            self.classifier = predict_prob

    def filter(self, doc: Document) -> str | None:
        words = _WORDS.findall(doc.text.lower())
        toxic = sum(1 for w in words if w in self.vocabulary)
        if toxic >= self.min_words and toxic / max(len(words), 1) > self.max_ratio:
            return "toxicity:word_list"
        if self.classifier is not None:
            lines = [line for line in doc.text.splitlines() if line.strip()] or [doc.text]
            probability = float(self.classifier(lines).mean())
            doc.metadata["toxicity_score"] = round(probability, 4)
            if probability > self.threshold:
                return "toxicity:classifier"
        return None
