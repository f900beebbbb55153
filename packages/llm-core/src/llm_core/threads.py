"""The one place stages set how many CPU threads torch uses (torch is imported only when asked)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_core.protocols import Executor


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (None: leave torch's setting), then restore.

    Set per stage: a tiny model gains nothing from more threads and a verifier pool beside the
    trainer needs a core of its own, while large matmuls want every core.
    """
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def threads_per_shard(threads: int | None, executor: Executor, shards: int) -> int | None:
    """Torch threads for each of ``shards`` shards that ``executor`` may run at once: ``threads``
    when set, else this machine's cores shared out among the concurrent shards (so that two
    shards on two cores take one thread each instead of fighting over both). An executor that
    runs shards in this process (one worker) leaves torch's setting (None)."""
    if threads:
        return threads
    workers = getattr(executor, "workers", None)
    if workers == 1 or shards <= 1:
        return None
    concurrent = min(shards, workers or shards)
    return max(1, (os.cpu_count() or 1) // concurrent)
