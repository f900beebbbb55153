"""Judging completions with a registered verifier, in this process or in a pool of worker processes.

A verifier is both an eval metric and an RL reward (``llm_core.protocols.Verifier``); the stages of
this package name one with a ``JudgeSpec`` (``verifier = {name = "math", workers = 2}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from llm_core.refs import VerifierRef
from llm_core.types import Verdict

_worker_verifier: Any = None


class JudgeSpec(VerifierRef):
    """A registered verifier and the processes that run it."""

    name: str = Field("math", description="registered verifier")
    workers: int = Field(0, ge=0, description="worker processes (0: judge in this process)")


def _init(ref: VerifierRef) -> None:
    global _worker_verifier
    from llm_core.plugins import get_registries

    _worker_verifier = ref.build(get_registries())


def _verify(item: tuple[str, str, Any]) -> Verdict:
    return _worker_verifier.verify(*item)


def judge(spec: JudgeSpec, registries: Any, items: Sequence[tuple[str, str, Any]]) -> list[Verdict]:
    """The verdict on every (prompt, completion, reference), in order."""
    if spec.workers == 0 or len(items) < 64:
        verifier = spec.build(registries)
        return [verifier.verify(*item) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ref = VerifierRef(name=spec.name, options=spec.options)
    # spawn: the caller holds torch threads, which a forked child would inherit in a broken state.
    with ProcessPoolExecutor(spec.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init,
                             initargs=(ref,)) as pool:
        return list(pool.map(_verify, items, chunksize=max(1, len(items) // (8 * spec.workers))))
