"""The protocols data and scoring components implement (DESIGN.md section 8).

Engines, rollout engines and tokenizers have their contract in ``llm_core.engines``; a stage's
protocol is beside its context in ``llm_core.stage``.

Structural typing (``typing.Protocol``): a component needs no base class from this package, only
the right methods. Tensors are typed ``Any`` so that this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from llm_core.types import Document, Verdict


@runtime_checkable
class Filter(Protocol):
    """Decides whether a document stays. Return ``None`` to keep it, or the reason to drop it.

    A short, stable reason string (``"gopher_quality:too_few_words"``) becomes a metric key: the
    stage counts drops per reason, so a filter never counts anything itself.

    Optional: ``filter_batch(docs) -> list[reason | None]`` (the filter stage and load-time gates
    call it when present, for filters that are faster on batches), and ``bind_inputs(inputs) ->
    Filter`` for a filter that reads data of the stage using it (an eval set given as one of the
    stage's inputs): stages call it with their input URIs by name before filtering.
    """

    def filter(self, doc: Document) -> str | None: ...


@runtime_checkable
class Transform(Protocol):
    """Rewrites a document (PII redaction, normalisation). Returns the new or the same document."""

    def transform(self, doc: Document) -> Document: ...


@runtime_checkable
class Reader(Protocol):
    """Streams documents from one file. Malformed records go to ``on_reject``, never raise."""

    def read(self, uri: str, on_reject: Callable[[dict[str, Any]], None]) -> Iterator[Document]: ...


@runtime_checkable
class Writer(Protocol):
    """Writes documents to one file atomically; returns how many it wrote."""

    def write(self, uri: str, docs: Iterable[Document]) -> int: ...


@runtime_checkable
class Verifier(Protocol):
    """Scores a completion against a reference. Serves as RL reward and as eval metric alike."""

    def verify(self, prompt: str, completion: str, reference: Any) -> Verdict: ...


@runtime_checkable
class Executor(Protocol):
    """Runs a picklable function over items, in parallel where it can, results in input order."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, desc: str = "") -> list[Any]: ...

    def shutdown(self) -> None: ...


@runtime_checkable
class EvalTask(Protocol):
    """A benchmark: yields examples and scores predictions with a verifier."""

    def examples(self) -> Iterable[Mapping[str, Any]]: ...

    def score(self, example: Mapping[str, Any], prediction: str) -> Verdict: ...
