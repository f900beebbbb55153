"""How many torch threads each concurrent shard gets."""

from __future__ import annotations

import os
from types import SimpleNamespace

from llm_core.threads import threads_per_shard


def test_threads_per_shard_shares_the_cores_among_concurrent_shards(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    pool = SimpleNamespace(workers=2)
    assert threads_per_shard(3, pool, 4) == 3  # the stage's own setting wins
    assert threads_per_shard(None, pool, 4) == 4  # two at a time on 8 cores
    assert threads_per_shard(None, SimpleNamespace(workers=16), 4) == 2  # four shards at once
    assert threads_per_shard(None, SimpleNamespace(workers=1), 4) is None  # in-process: torch's own
    assert threads_per_shard(None, pool, 1) is None
    assert threads_per_shard(None, object(), 3) == 2  # an executor that does not say: every shard at once
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert threads_per_shard(None, SimpleNamespace(workers=4), 4) == 1
