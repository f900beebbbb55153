"""Shared data types that every package speaks (DESIGN.md section 8).

Plain slotted dataclasses rather than pydantic models: they sit on hot paths (millions of
documents through a filter chain), where validation on every construction would cost more than
the filtering itself. Configs are pydantic; data records are these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass(slots=True)
class Document:
    """One text record of a corpus. ``metadata`` carries source, language, scores, drop reasons."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, record: dict[str, Any], text_key: str = "text", id_key: str = "id") -> Document:
        """Build from a JSON record; raises ``KeyError``/``TypeError`` naming the bad field."""
        if text_key not in record:
            raise KeyError(f"missing field {text_key!r}")
        text = record[text_key]
        if not isinstance(text, str):
            raise TypeError(f"field {text_key!r} must be a string, got {type(text).__name__}")
        metadata = dict(record.get("metadata") or {})
        for key, value in record.items():
            if key not in (text_key, id_key, "metadata"):
                metadata[key] = value
        return cls(id=str(record.get(id_key, "")), text=text, metadata=metadata)


@dataclass(slots=True, frozen=True)
class Message:
    role: Role
    content: str


@dataclass(slots=True)
class Conversation:
    """A chat: ordered messages. Training on it masks every token that is not the assistant's."""

    messages: list[Message]
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Conversation:
        raw = record.get("messages")
        if not isinstance(raw, list) or not raw:
            raise ValueError("field 'messages' must be a non-empty list of {role, content}")
        messages = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
            if m["role"] not in ROLES:
                raise ValueError(f"messages[{i}].role is {m['role']!r}; expected one of {ROLES}")
            messages.append(Message(role=m["role"], content=str(m["content"])))
        return cls(messages=messages, id=str(record.get("id", "")),
                   metadata=dict(record.get("metadata") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "messages": [asdict(m) for m in self.messages],
                "metadata": self.metadata}


@dataclass(slots=True, frozen=True)
class Problem:
    """A prompt for a model to answer, with its known answer (``reference``) where the stage
    checks one (RL, evaluation, verified sampling); ``None`` where it needs none."""

    id: str
    prompt: str
    reference: Any = None


@dataclass(slots=True)
class PreferencePair:
    """A prompt with a preferred and a rejected response (DPO family, reward models)."""

    prompt: list[Message]
    chosen: str
    rejected: str
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Sample:
    """One generated completion: its token ids, the sampler's per-token logprobs, and text."""

    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    text: str = ""
    finish_reason: Literal["stop", "length"] = "length"


@dataclass(slots=True)
class Rollout:
    """A prompt's group of samples with the rewards a verifier gave them (GRPO, RLOO...)."""

    prompt: str
    samples: list[Sample]
    rewards: list[float] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Verdict:
    """A verifier's judgement: ``score`` is the reward; ``passed`` the pass/fail used for pass@k."""

    score: float
    passed: bool
    reason: str = ""
    cost: float = 0.0  # seconds (or another unit the verifier names) spent judging


@dataclass(slots=True)
class StageResult:
    """What a stage reports back to the runner: headline metrics and the artifacts it wrote."""

    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> URI under the stage dir
