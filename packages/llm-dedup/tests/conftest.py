"""Shared fixtures of llm-dedup's tests: a real-text corpus with known near-duplicates, and a way
to run recipes in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helper modules next to this file (importlib mode)

from dedup_helpers import write_shards

from llm_core.plugins import get_host, reset_host
from llm_dedup.evaluation import NearDuplicateCorpus, gensim_sentences, near_duplicate_corpus

CORPUS_DOCS = 3000
CORPUS_SHARDS = 3


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return gensim_sentences()


@pytest.fixture(scope="session")
def corpus(sentences) -> NearDuplicateCorpus:
    """3,000 documents of real sentences, 15% of them near-duplicates at Jaccard 0.5 to 1.0."""
    return near_duplicate_corpus(sentences, CORPUS_DOCS, duplicate_fraction=0.15, seed=7)


@pytest.fixture(scope="session")
def corpus_dir(corpus, tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("corpus"), corpus.texts, CORPUS_SHARDS)


@pytest.fixture
def host():
    reset_host()
    yield get_host()
    reset_host()
