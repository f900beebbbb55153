"""Streaming helpers for stages that read whole inputs: every document, or a seeded sample."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from llm_core.builtins.filter_stage import list_input_files, reader_for
from llm_core.plugins import get_registries
from llm_core.types import Document


def iter_documents(uri: str, reader: str = "auto", reader_options: dict[str, Any] | None = None,
                   on_reject: Any = None) -> Iterator[Document]:
    """Every document of a file or folder, file by file (malformed records go to ``on_reject``)."""
    files = list_input_files(uri)
    if not files:
        raise FileNotFoundError(f"no data files under {uri}")
    readers = get_registries().readers
    for path in files:
        name = reader_for(path.rsplit("/", 1)[-1], reader)
        yield from readers.build(name, reader_options or {}).read(path, on_reject or (lambda record: None))


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
