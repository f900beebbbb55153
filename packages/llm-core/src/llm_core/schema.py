"""The base of every config, and how pydantic's validation errors read to a user.

Kept apart from ``config`` (recipes) so that modules which only define configs import nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from llm_core.errors import close_matches


class Config(BaseModel):
    """Base of every component config: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def required_modules(self) -> dict[str, str]:
        """Optional Python packages these options need: import name -> how to install it.

        ``llmt validate`` checks them for every stage and component, so a missing extra is named
        with its install command before anything runs. A config overrides this when an option
        pulls in an optional dependency (``sentences = "gensim"``)."""
        return {}


def _loc(parts: Sequence[Any]) -> str:
    return ".".join(str(p) for p in parts)


def nested_field_paths(model: type[BaseModel] | None, depth: int = 2) -> dict[str, str]:
    """Every field name of the nested specs of a config -> its dotted path (``lr`` ->
    ``optimizer.lr``), so that a flat option can be pointed to where it now lives."""
    found: dict[str, str] = {}
    if model is None or depth == 0:
        return found
    for name, info in model.model_fields.items():
        nested = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) \
            else None
        if nested is None:
            continue
        for inner in nested.model_fields:
            found.setdefault(inner, f"{name}.{inner}")
        for inner, path in nested_field_paths(nested, depth - 1).items():
            found.setdefault(inner, f"{name}.{path}")
    return found


def pydantic_problems(exc: ValidationError, prefix: str, fields: Sequence[str] = (),
                      model: type[BaseModel] | None = None) -> list[str]:
    problems = []
    for err in exc.errors():
        path = _loc([prefix, *err["loc"]]) if prefix else _loc(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            nested = nested_field_paths(model).get(key) if len(err["loc"]) == 1 else None
            hint = [nested] if nested else close_matches(key, fields)
            msg = "unknown option" + (f"; did you mean {hint[0]!r}?" if hint else
                                      (f"; valid options: {', '.join(fields)}" if fields else ""))
        elif err["type"] in ("literal_error", "enum") and "expected" in err.get("ctx", {}):
            msg = f"{msg} (got {err.get('input')!r})"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        problems.append(f"{path}: {msg}")
    return problems
