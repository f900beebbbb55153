"""Streaming helpers for stages that read whole inputs: every document, or a seeded sample."""

from __future__ import annotations

import random
from collections.abc import Iterator

from llm_core.data_io import RejectLog, list_sources
from llm_core.plugins import get_registries
from llm_core.refs import ReaderRef
from llm_core.types import Document


def iter_documents(uri: str, rejects: RejectLog, reader: ReaderRef | None = None) -> Iterator[Document]:
    """Every document of a file or folder, source by source; malformed records go to ``rejects``
    (the caller writes them out: nothing is dropped silently). ``reader`` None: by file suffix."""
    registries = get_registries()
    for source in list_sources(uri, reader.name if reader else "auto"):
        yield from (reader or ReaderRef(name=source.reader)).build(registries).read(source.uri, rejects)


def reservoir_sample(docs: Iterator[Document], k: int, seed: int) -> list[Document]:
    """A uniform sample of ``k`` documents from a stream of unknown length, in one pass."""
    rng = random.Random(seed)
    sample: list[Document] = []
    for i, doc in enumerate(docs):
        if i < k:
            sample.append(doc)
        else:
            j = rng.randrange(i + 1)
            if j < k:
                sample[j] = doc
    return sample
