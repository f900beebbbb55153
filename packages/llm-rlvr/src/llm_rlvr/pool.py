"""Verification off the trainer's back: a process pool with a per-sample timeout.

``VerifierPool.submit`` returns at once with a future, so a trainer can keep generating while
earlier samples are being judged. A sample that runs past ``timeout_s`` (a sympy expression that
never simplifies, a verifier stuck in a loop) has its worker killed and replaced by pebble, and
scores 0 with reason ``"verifier timed out"``; a verifier that raises scores 0 with the error.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Sequence
from typing import Any, Self

from llm_core.refs import VerifierRef
from llm_core.types import Verdict

_worker_verifier: Any = None


def _init_worker(verifier: VerifierRef) -> None:
    global _worker_verifier
    from llm_core.plugins import get_registries

    _worker_verifier = verifier.build(get_registries())


def _verify_in_worker(prompt: str, completion: str, reference: Any) -> Verdict:
    return _worker_verifier.verify(prompt, completion, reference)


class VerifierFuture:
    """A pending verdict; ``result()`` never raises: failures become a zero-score verdict."""

    def __init__(self, future: concurrent.futures.Future | None, ready: Verdict | None = None):
        self._future, self._ready = future, ready

    def done(self) -> bool:
        return self._ready is not None or self._future.done()

    def result(self) -> Verdict:
        if self._ready is None:
            try:
                self._ready = self._future.result()
            except concurrent.futures.TimeoutError:
                self._ready = Verdict(0.0, False, "verifier timed out")
            except Exception as exc:  # noqa: BLE001 - a broken sample must not stop training
                self._ready = Verdict(0.0, False, f"verifier error: {type(exc).__name__}: {exc}"[:200])
        return self._ready


class VerifierPool:
    """Runs one registered verifier in ``workers`` processes (0: in this process, no timeout)."""

    def __init__(self, verifier: VerifierRef, *, workers: int = 2, timeout_s: float = 30.0):
        self.verifier, self.timeout_s, self.workers = verifier, timeout_s, workers
        if workers > 0:
            import multiprocessing

            from pebble import ProcessPool

            # spawn: the trainer holds torch threads, which fork would copy in a broken state.
            self._pool = ProcessPool(max_workers=workers, initializer=_init_worker,
                                     initargs=(verifier,),
                                     context=multiprocessing.get_context("spawn"))
            self._local = None
        else:
            from llm_core.plugins import get_registries

            self._pool = None
            self._local = verifier.build(get_registries())

    def submit(self, prompt: str, completion: str, reference: Any) -> VerifierFuture:
        if self._pool is None:
            try:
                return VerifierFuture(None, self._local.verify(prompt, completion, reference))
            except Exception as exc:  # noqa: BLE001
                return VerifierFuture(None, Verdict(0.0, False, f"verifier error: {type(exc).__name__}: {exc}"))
        future = self._pool.schedule(_verify_in_worker, args=(prompt, completion, reference), timeout=self.timeout_s)
        return VerifierFuture(future)

    def submit_many(self, items: Iterable[Sequence[Any]]) -> list[VerifierFuture]:
        return [self.submit(*item) for item in items]

    def verify_many(self, items: Iterable[Sequence[Any]]) -> list[Verdict]:
        return [f.result() for f in self.submit_many(items)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
