"""Shared helpers for llm-data tests: documents from text, prose that passes every rule."""

from __future__ import annotations

import pytest

from llm_core.types import Document

PROSE = (
    "The history of the town goes back to the early middle ages, when a small group of farmers settled "
    "by the river. Over the following centuries the settlement grew into a market town with a church, "
    "a school and a busy harbour. Many of the old buildings have survived to this day, and visitors "
    "come from far away to walk through the narrow streets and to see the painted houses that line "
    "the main square. The town is also known for its annual festival, which brings music, food and "
    "theatre to the streets every summer and attracts people of all ages from the whole region."
)


def _make_doc(text: str, **metadata) -> Document:
    return Document(id="d", text=text, metadata=dict(metadata))


@pytest.fixture
def make_doc():
    """Build a document from text and metadata keywords."""
    return _make_doc


@pytest.fixture
def prose() -> str:
    return PROSE
