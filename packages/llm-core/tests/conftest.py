"""Shared fixtures for llm-core's tests."""

from __future__ import annotations

import uuid

import pytest

from llm_core.plugins import PluginHost, get_host, reset_host


@pytest.fixture
def host() -> PluginHost:
    """A freshly discovered plugin host (the installed entry points), made the process default."""
    reset_host()
    fresh = get_host()
    yield fresh
    reset_host()


@pytest.fixture
def memory_root() -> str:
    return f"memory://runs/{uuid.uuid4().hex[:8]}"
