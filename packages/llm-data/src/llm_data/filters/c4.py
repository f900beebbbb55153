"""``c4_quality``: the C4 rules (Raffel et al. 2020, section 2.2), line by line.

Lines without terminal punctuation, with fewer than three words, mentioning javascript or cookie /
terms-of-use boilerplate are removed from the text; a document with "lorem ipsum" or a curly
bracket, or fewer than five sentences left, is dropped. Sentences are counted per kept line as
spaCy's sentencizer splits them (datatrove's reference behaviour).
"""

from __future__ import annotations

import re

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document
from llm_data.filters.words import english_tokenizer

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                  "use cookies")


class C4QualityConfig(Config):
    remove_citations: bool = Field(True, description="strip [1], [edit], [citation needed]")
    require_terminal_punctuation: bool = Field(True, description="drop lines not ending in . ? ! \" '")
    min_sentences: int | None = Field(5, ge=1, description="fewest sentences left; None: no minimum")
    min_words_per_line: int = Field(3, ge=0, description="drop lines with fewer words")
    max_word_length: int | None = Field(1000, ge=1, description="drop lines with a longer word")
    drop_lorem_ipsum: bool = True
    drop_javascript_lines: bool = True
    drop_curly_bracket: bool = True
    drop_policy_lines: bool = True


class C4QualityFilter:
    """Removes boilerplate lines and drops documents the C4 rules reject."""

    def __init__(self, config: C4QualityConfig):
        self.remove_citations, self.require_punct = config.remove_citations, config.require_terminal_punctuation
        self.min_sentences, self.min_words = config.min_sentences, config.min_words_per_line
        self.max_word_length = config.max_word_length
        self.lorem, self.javascript = config.drop_lorem_ipsum, config.drop_javascript_lines
        self.curly, self.policy = config.drop_curly_bracket, config.drop_policy_lines

    def filter(self, doc: Document) -> str | None:
        kept, sentences = [], 0
        for raw in doc.text.splitlines():
            line = raw.strip()
            words = line.split()
            if self.max_word_length is not None and any(len(w) > self.max_word_length for w in words):
                continue
            if self.remove_citations:
                line = CITATION.sub("", line)
            if self.require_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                continue
            if len(words) < self.min_words:
                continue
            lower = line.lower()
            if self.lorem and "lorem ipsum" in lower:
                return "c4_quality:lorem_ipsum"
            if self.javascript and "javascript" in lower:
                continue
            if self.curly and "{" in line:
                return "c4_quality:curly_bracket"
            if self.policy and any(p in lower for p in POLICY_PHRASES):
                continue
            sentences += english_tokenizer().count_sentences(line)  # spaCy's sentencizer, as datatrove
            kept.append(line)
        if self.min_sentences is not None and sentences < self.min_sentences:
            return "c4_quality:too_few_sentences"
        doc.text = "\n".join(kept).strip()
        return None
