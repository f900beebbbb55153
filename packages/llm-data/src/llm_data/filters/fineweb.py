"""``fineweb_quality``: the line-level rules FineWeb added on top of Gopher and C4 (Penedo et al. 2024).

Drops documents where too few lines end in terminal punctuation, too many lines are short, too many
characters sit in duplicated lines, or there are too many newlines per word (lists, menus).
"""

from __future__ import annotations

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document
from llm_data.filters.text import TERMINAL_PUNCTUATION, split_words

_LINE_ENDINGS = tuple(TERMINAL_PUNCTUATION)  # datatrove's: sentence-final characters, no quotes or brackets


class FineWebQualityConfig(Config):
    min_punctuated_line_ratio: float = Field(0.12, ge=0, le=1, description="lines ending in terminal punctuation")
    max_short_line_ratio: float = Field(0.67, ge=0, le=1, description="lines of at most short_line_chars")
    short_line_chars: int = Field(30, ge=1)
    max_duplicate_line_char_ratio: float = Field(0.01, ge=0, le=1, description="chars in repeated lines")
    max_newlines_per_word: float = Field(0.3, ge=0, description="newlines / words (list-like pages)")


class FineWebQualityFilter:
    """FineWeb's four extra line rules, each with its own reason."""

    def __init__(self, config: FineWebQualityConfig):
        self.min_punct, self.max_short = config.min_punctuated_line_ratio, config.max_short_line_ratio
        self.short_chars, self.max_dup = config.short_line_chars, config.max_duplicate_line_char_ratio
        self.max_newlines = config.max_newlines_per_word

    def filter(self, doc: Document) -> str | None:
        lines = [line for line in doc.text.split("\n") if line.strip()]
        if not lines:
            return "fineweb_quality:empty"
        if sum(1 for line in lines if line.endswith(_LINE_ENDINGS)) / len(lines) < self.min_punct:
            return "fineweb_quality:few_punctuated_lines"
        if sum(1 for line in lines if len(line) <= self.short_chars) / len(lines) > self.max_short:
            return "fineweb_quality:many_short_lines"
        seen: set[str] = set()
        dup_chars = 0
        for line in lines:
            if line in seen:
                dup_chars += len(line)
            seen.add(line)
        if dup_chars / max(len(doc.text) - doc.text.count("\n"), 1) > self.max_dup:
            return "fineweb_quality:duplicate_line_chars"
        if doc.text.count("\n") / max(len(split_words(doc.text)), 1) > self.max_newlines:
            return "fineweb_quality:list_like"
        return None
