"""The default executor: a process pool on this machine (or in-process with one worker)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Literal

from pydantic import Field

from llm_core.config import Config
from llm_core.progress import configure_worker_logging, progress, worker_logging_level


class LocalExecutorConfig(Config):
    workers: int = Field(0, ge=0, description="processes; 0 means one per CPU core; 1 runs in-process")
    start_method: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn", description="how workers start; spawn is the safe choice next to torch and threads")


class LocalExecutor:
    """Runs shards in a process pool. One worker runs them in this process, in order: the mode
    for ``memory://`` stores (not shared across processes) and for debugging."""

    def __init__(self, config: LocalExecutorConfig | None = None):
        config = config or LocalExecutorConfig()
        self.workers = config.workers or os.cpu_count() or 1
        self.start_method = config.start_method

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str = "") -> list[Any]:
        results: list[Any] = [None] * len(items)
        with progress(len(items), desc) as advance:
            if self.workers == 1 or len(items) <= 1:
                for i, item in enumerate(items):
                    results[i] = fn(item)
                    advance()
                return results
            context = multiprocessing.get_context(self.start_method)
            # Workers log as this process does: a spawned process starts with no logging set up.
            with ProcessPoolExecutor(min(self.workers, len(items)), mp_context=context,
                                     initializer=configure_worker_logging,
                                     initargs=(worker_logging_level(),)) as pool:
                futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    advance()
        return results

    def shutdown(self) -> None:
        pass
