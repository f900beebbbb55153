"""The one place stages set how many CPU threads torch uses (torch is imported only when asked)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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
