"""``gopher_quality`` and ``gopher_repetition``: the rules of the Gopher paper (arXiv 2112.11446).

Thresholds default to the paper's (Table A1); every one is configurable and ``None`` switches a
rule off. Reasons and the order of checks follow datatrove, so that drop counts compare.
"""

from __future__ import annotations

import re

import numpy as np
from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document
from llm_data.filters.text import (
    duplicate_ngram_chars,
    ngram_hashes,
    split_words,
    top_ngram_chars,
    window_sums,
    word_counts,
    word_ids,
)

DEFAULT_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class GopherQualityConfig(Config):
    min_doc_words: int | None = Field(50, ge=0, description="fewest non-symbol words")
    max_doc_words: int | None = Field(100_000, ge=1, description="most non-symbol words")
    min_avg_word_length: float | None = Field(3, ge=0, description="shortest mean word length")
    max_avg_word_length: float | None = Field(10, ge=0, description="longest mean word length")
    max_symbol_word_ratio: float | None = Field(0.1, ge=0, description="'#' or ellipses per word")
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1, description="lines starting with a bullet")
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1, description="lines ending in an ellipsis")
    min_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1, description="words with a letter")
    min_stop_words: int | None = Field(2, ge=0, description="distinct stop words required")
    stop_words: list[str] = Field(list(DEFAULT_STOP_WORDS), description="the stop word list")


class GopherQualityFilter:
    """Drops documents whose word statistics do not look like prose (Gopher section A.1.1)."""

    def __init__(self, config: GopherQualityConfig):
        self.min_doc_words, self.max_doc_words = config.min_doc_words, config.max_doc_words
        self.min_avg, self.max_avg = config.min_avg_word_length, config.max_avg_word_length
        self.max_symbol_ratio = config.max_symbol_word_ratio
        self.max_bullets, self.max_ellipsis_lines = config.max_bullet_lines_ratio, config.max_ellipsis_lines_ratio
        self.min_alpha_ratio, self.min_stop_words = config.min_alpha_words_ratio, config.min_stop_words
        self.stop_words = frozenset(DEFAULT_STOP_WORDS if config.stop_words is None else config.stop_words)

    def filter(self, doc: Document) -> str | None:
        text = doc.text
        words = split_words(text)
        n_words = len(words) or 1
        n_content, content_chars, letterless = word_counts(words)
        if self.min_doc_words is not None and n_content < self.min_doc_words:
            return "gopher_quality:too_few_words"
        if self.max_doc_words is not None and n_content > self.max_doc_words:
            return "gopher_quality:too_many_words"
        mean_length = content_chars / n_content if n_content else 0.0
        if self.min_avg is not None and mean_length < self.min_avg:
            return "gopher_quality:short_words"
        if self.max_avg is not None and mean_length > self.max_avg:
            return "gopher_quality:long_words"
        if self.max_symbol_ratio is not None:
            if text.count("#") / n_words > self.max_symbol_ratio:
                return "gopher_quality:too_many_hashes"
            if (text.count("...") + text.count("…")) / n_words > self.max_symbol_ratio:
                return "gopher_quality:too_many_ellipses"
        reason = self._line_rules(text)
        if reason:
            return reason
        alpha_ratio = (len(words) - letterless) / n_words
        if self.min_alpha_ratio is not None and alpha_ratio < self.min_alpha_ratio:
            return "gopher_quality:few_alphabetic_words"
        if self.min_stop_words is not None and len(self.stop_words.intersection(words)) < self.min_stop_words:
            return "gopher_quality:few_stop_words"
        return None

    def _line_rules(self, text: str) -> str | None:
        lines = text.splitlines() or [""]
        if self.max_bullets is not None:
            bullets = sum(1 for s in lines if s.lstrip().startswith(("•", "-")))
            if bullets / len(lines) > self.max_bullets:
                return "gopher_quality:too_many_bullet_lines"
        if self.max_ellipsis_lines is not None:
            ellipses = sum(1 for s in lines if s.rstrip().endswith(("...", "…")))
            if ellipses / len(lines) > self.max_ellipsis_lines:
                return "gopher_quality:too_many_ellipsis_lines"
        return None


class GopherRepetitionConfig(Config):
    dup_line_frac: float | None = Field(0.3, ge=0, le=1, description="duplicate lines / lines")
    dup_para_frac: float | None = Field(0.3, ge=0, le=1, description="duplicate paragraphs / paragraphs")
    dup_line_char_frac: float | None = Field(0.2, ge=0, le=1, description="chars in duplicate lines")
    dup_para_char_frac: float | None = Field(0.2, ge=0, le=1, description="chars in duplicate paragraphs")
    top_n_grams: dict[int, float] = Field({2: 0.2, 3: 0.18, 4: 0.16},
                                          description="n -> max char fraction of the top n-gram")
    dup_n_grams: dict[int, float] = Field({5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
                                          description="n -> max char fraction in repeated n-grams")


_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


class GopherRepetitionFilter:
    """Drops documents that repeat lines, paragraphs or n-grams (Gopher section A.1.1, Table A1)."""

    def __init__(self, config: GopherRepetitionConfig):
        self.dup_line_frac, self.dup_para_frac = config.dup_line_frac, config.dup_para_frac
        self.dup_line_char_frac, self.dup_para_char_frac = config.dup_line_char_frac, config.dup_para_char_frac
        self.top_n_grams, self.dup_n_grams = sorted(config.top_n_grams.items()), sorted(config.dup_n_grams.items())

    def filter(self, doc: Document) -> str | None:
        text = doc.text
        if not text:
            return "gopher_repetition:empty"
        reason = (self._duplicates(_PARAGRAPHS.split(text.strip()), len(text), "paragraph",
                                   self.dup_para_frac, self.dup_para_char_frac)
                  or self._duplicates(_LINES.split(text), len(text), "line",
                                      self.dup_line_frac, self.dup_line_char_frac))
        return reason or self._ngram_rules(split_words(text), len(text))

    @staticmethod
    def _duplicates(parts: list[str], n_chars: int, unit: str, max_frac: float | None,
                    max_char_frac: float | None) -> str | None:
        seen: set[str] = set()
        dup_count = dup_chars = 0
        for part in parts:
            if part in seen:
                dup_count += 1
                dup_chars += len(part)
            else:
                seen.add(part)
        if max_frac is not None and dup_count / len(parts) > max_frac:
            return f"gopher_repetition:duplicate_{unit}s"
        if max_char_frac is not None and dup_chars / n_chars > max_char_frac:
            return f"gopher_repetition:duplicate_{unit}_chars"
        return None

    def _ngram_rules(self, words: list[str], n_chars: int) -> str | None:
        if not words:
            return None
        ids = word_ids(words)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        for n, max_frac in self.top_n_grams:
            hashes = ngram_hashes(ids, n)
            if len(hashes) == 0:
                continue
            chars = window_sums(lengths, n) + (n - 1)  # words joined by spaces
            if top_ngram_chars(hashes, chars) / n_chars > max_frac:
                return f"gopher_repetition:top_{n}_gram"
        for n, max_frac in self.dup_n_grams:
            repeated = duplicate_ngram_chars(ngram_hashes(ids, n), lengths, n, max_frac * n_chars)
            if repeated / n_chars > max_frac:
                return f"gopher_repetition:duplicate_{n}_grams"
            if repeated == 0:
                break  # no n-gram repeats, so no longer one does either
        return None
