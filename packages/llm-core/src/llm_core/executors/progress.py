"""Progress for long work: a rich bar on a terminal, a few plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def progress(total: int, desc: str) -> Iterator[callable]:
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(desc or "working", total=total)
            yield lambda n=1: bar.advance(task, n)
        return
    state = {"done": 0, "last": time.monotonic()}

    def advance(n: int = 1) -> None:
        state["done"] += n
        now = time.monotonic()
        if state["done"] == total or now - state["last"] > 10:
            state["last"] = now
            print(f"{desc}: {state['done']}/{total}", file=sys.stderr, flush=True)

    yield advance
