"""User-facing errors. Each says what was wrong, where, and how to fix it (DESIGN.md section 9)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LlmtError(Exception):
    """Base of every error this toolkit raises on purpose."""


class UnknownComponentError(LlmtError, KeyError):
    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = ""):
        self.kind, self.name = kind, name
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" Registered {kind}: {', '.join(known) if known else '(none)'}."
        if hint:
            msg += " " + hint
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DuplicateComponentError(LlmtError):
    pass


class RecipeError(LlmtError):
    """A recipe failed validation; ``problems`` holds every problem, each with its dotted path."""

    def __init__(self, problems: list[str], source: str = "recipe"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class PluginLoadError(LlmtError):
    pass


def close_matches(name: str, choices: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
