"""Two generic filters every corpus needs; the quality rule sets live in llm-data."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from llm_core.config import Config
from llm_core.types import Document


class LengthFilterConfig(Config):
    min_chars: int = Field(0, ge=0)
    max_chars: int | None = Field(None, ge=1, description="None: no upper bound")

    @model_validator(mode="after")
    def _ordered(self) -> LengthFilterConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


class LengthFilter:
    """Drops documents shorter or longer than the given number of characters."""

    def __init__(self, config: LengthFilterConfig):
        self.config = config

    def filter(self, doc: Document) -> str | None:
        n = len(doc.text)
        if n < self.config.min_chars:
            return "length:too_short"
        if self.config.max_chars is not None and n > self.config.max_chars:
            return "length:too_long"
        return None


class RegexFilterConfig(Config):
    pattern: str = Field(description="Python regular expression searched in the text")
    drop_on_match: bool = Field(True, description="True drops matching documents; False keeps only them")

    @model_validator(mode="after")
    def _compiles(self) -> RegexFilterConfig:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        return self


class RegexFilter:
    """Drops documents whose text matches a pattern (or, inverted, those that do not)."""

    def __init__(self, config: RegexFilterConfig):
        self.regex = re.compile(config.pattern)
        self.drop_on_match = config.drop_on_match

    def filter(self, doc: Document) -> str | None:
        matched = self.regex.search(doc.text) is not None
        if matched == self.drop_on_match:
            return "regex:matched" if matched else "regex:no_match"
        return None
