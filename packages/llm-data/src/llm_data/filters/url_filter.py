"""``url_filter``: drop documents whose URL is on a domain / URL blocklist or holds a banned subword.

A shipped default list (``llm_data/assets``) plus the user's own lists. Domains match on the host
and every parent domain (``a.b.example.com`` is blocked by ``example.com``).
"""

from __future__ import annotations

import re
from importlib import resources
from urllib.parse import urlsplit

from pydantic import Field

from llm_core.config import Config
from llm_core.types import Document


def load_list(name: str) -> list[str]:
    """A shipped list from ``llm_data/assets``, comments and blank lines removed."""
    text = resources.files("llm_data").joinpath("assets", name).read_text(encoding="utf-8")
    return [line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class UrlFilterConfig(Config):
    url_key: str = Field("url", description="metadata field holding the URL")
    blocked_domains: list[str] = Field([], description="extra domains to block (with their subdomains)")
    blocked_urls: list[str] = Field([], description="exact URLs to block")
    banned_subwords: list[str] = Field([], description="extra substrings that block a URL")
    use_default_lists: bool = Field(True, description="also use the shipped domain and subword lists")
    drop_missing_url: bool = Field(False, description="drop documents that have no URL")


class UrlFilter:
    """Blocklisted domains, exact URLs and banned URL subwords; one reason for each."""

    def __init__(self, config: UrlFilterConfig):
        self.url_key, self.drop_missing_url = config.url_key, config.drop_missing_url
        domains = {d.lower().lstrip(".") for d in config.blocked_domains or []}
        subwords = {w.lower() for w in config.banned_subwords or []}
        if config.use_default_lists:
            domains.update(load_list("url_blocklist.txt"))
            subwords.update(load_list("url_banned_subwords.txt"))
        self.domains = frozenset(domains)
        self.urls = frozenset(u.strip() for u in config.blocked_urls or [])
        # One alternation scans the URL once for every subword.
        self.subwords = re.compile("|".join(map(re.escape, sorted(subwords)))) if subwords else None

    def filter(self, doc: Document) -> str | None:
        url = doc.metadata.get(self.url_key)
        if not url:
            return "url_filter:missing_url" if self.drop_missing_url else None
        if url in self.urls:
            return "url_filter:blocked_url"
        host = (urlsplit(url).hostname or "").lower()
        parts = host.split(".")
        if any(".".join(parts[i:]) in self.domains for i in range(len(parts) - 1)):
            return "url_filter:blocked_domain"
        if self.subwords is not None and self.subwords.search(url.lower()):
            return "url_filter:banned_subword"
        return None
