"""The protocols components implement (DESIGN.md sections 7-8).

Structural typing (``typing.Protocol``): a component needs no base class from this package, only
the right methods. Tensors are typed ``Any`` so that this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llm_core.types import Document, Sample, StageResult, Verdict

if TYPE_CHECKING:  # pragma: no cover
    from llm_core.stage import StageContext


@runtime_checkable
class Filter(Protocol):
    """Decides whether a document stays. Return ``None`` to keep it, or the reason to drop it.

    A short, stable reason string (``"gopher_quality:too_few_words"``) becomes a metric key: the
    stage counts drops per reason, so a filter never counts anything itself.
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
class Stage(Protocol):
    """One step of a recipe. Reads ``ctx.inputs``, writes under ``ctx.stage_dir``."""

    def run(self, ctx: StageContext) -> StageResult | None: ...


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
class TrainEngine(Protocol):
    """A trainable policy (DESIGN.md section 7). Losses are pure functions the engine calls.

    A batch is a mapping: ``input_ids`` (B, T) required; optional ``attention_mask`` (B, T),
    ``labels`` (B, T) aligned so that ``labels[:, t]`` is the token predicted at position t (-100:
    no loss), or ``loss_mask`` (B, T) marking the target tokens of ``input_ids``; every other key
    (``advantages``, ``old_logprobs``...) is handed to the loss. ``logprobs(batch)`` returns (B, T)
    log-probabilities of ``labels``, 0 where ignored. ``train_step`` calls ``loss_fn`` with the
    keyword arguments its signature names among ``logits``, ``labels``, ``logprobs``, ``mask``,
    ``values`` and the extra batch keys; it returns a scalar or ``(scalar, metrics)``. The embedded
    engine's README (integration/llm-torch) documents the full surface.
    """

    def logprobs(self, batch: Mapping[str, Any]) -> Any: ...

    def train_step(self, batch: Mapping[str, Any], loss_fn: Callable[..., Any]) -> dict[str, float]: ...

    def reference(self) -> TrainEngine: ...

    def save(self, uri: str) -> None: ...

    def load(self, uri: str) -> None: ...

    def export_hf(self, uri: str) -> None: ...


@runtime_checkable
class RolloutEngine(Protocol):
    """Generates samples with per-token logprobs, and takes new policy weights.

    ``generate`` returns one group of ``n`` ``Sample`` per prompt, in prompt order; a sample's
    ``logprobs[i]`` is the policy's log-probability of ``token_ids[i]`` at temperature 1 (before
    top-k / top-p), so that it equals ``TrainEngine.logprobs`` over the same tokens.
    """

    def generate(self, prompt_ids: Sequence[Sequence[int]], n: int, sampling: Any) -> list[list[Sample]]: ...

    def update_weights(self, state: Any) -> None: ...


@runtime_checkable
class EvalTask(Protocol):
    """A benchmark: yields examples and scores predictions with a verifier."""

    def examples(self) -> Iterable[Mapping[str, Any]]: ...

    def score(self, example: Mapping[str, Any], prediction: str) -> Verdict: ...
