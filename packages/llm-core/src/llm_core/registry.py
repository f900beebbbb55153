"""Typed registries: the one place components are found by name (DESIGN.md section 4).

Plugins receive a :class:`Registry` in their ``register_*`` hook and call ``add``. Each entry
records which plugin added it, so ``llmt plugins`` can say where every component comes from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_core.errors import DuplicateComponentError, UnknownComponentError

# Every kind of component, in the order the hookspecs list them. ``register_<kind>`` fills each.
KINDS: tuple[str, ...] = (
    "readers", "writers", "filters", "transforms", "stages", "losses",
    "advantage_estimators", "verifiers", "eval_tasks", "engines", "rollout_engines",
    "precision_recipes", "context_extensions", "executors", "callbacks", "commands",
)


_SINGULAR = {"readers": "reader", "writers": "writer", "filters": "filter", "transforms": "transform",
             "stages": "stage kind", "losses": "loss", "advantage_estimators": "advantage estimator",
             "verifiers": "verifier", "eval_tasks": "eval task", "engines": "engine",
             "rollout_engines": "rollout engine", "precision_recipes": "precision recipe",
             "context_extensions": "context extension", "executors": "executor", "callbacks": "callback",
             "commands": "command"}


def singular(kind: str) -> str:
    """How one component of a kind is called in messages: ``losses`` -> ``loss``."""
    return _SINGULAR.get(kind, kind)


@dataclass(frozen=True)
class RegistryEntry:
    kind: str
    name: str
    factory: Callable[..., Any]
    config: type | None  # a pydantic model class, or None for a component without options
    summary: str
    plugin: str
    inputs: tuple[str, ...] = ()  # stages only: the input names the stage requires
    optional_inputs: tuple[str, ...] = ()

    def parse(self, options: Mapping[str, Any] | None = None) -> Any:
        """Validate options into the config model (raises pydantic ``ValidationError``)."""
        options = dict(options or {})
        if self.config is None:
            if options:
                raise TypeError(f"{singular(self.kind)} {self.name!r} takes no options, got {sorted(options)}")
            return None
        return self.config.model_validate(options)

    def build(self, options: Mapping[str, Any] | Any = None) -> Any:
        """The one config path: options are validated once into the frozen config, and the factory
        receives that config object (``factory(config)``); a component without a config gets
        ``factory()``. An already-validated config instance is passed through as it is."""
        config = options if self.config is not None and isinstance(options, self.config) else self.parse(options)
        if config is None:
            return self.factory()
        return self.factory(config)

    def schema(self) -> dict[str, Any]:
        return self.config.model_json_schema() if self.config is not None else {"type": "object", "properties": {}}


@dataclass
class Registry:
    """Components of one kind, by name."""

    kind: str
    _entries: dict[str, RegistryEntry] = field(default_factory=dict)
    _plugin: str = "<unknown>"
    broken_plugins: dict[str, str] = field(default_factory=dict)  # filled by the plugin loader

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        config: type | None = None,
        summary: str = "",
        inputs: tuple[str, ...] = (),
        optional_inputs: tuple[str, ...] = (),
        override: bool = False,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind}: a component needs a non-empty string name, got {name!r}")
        if config is not None and not hasattr(config, "model_validate"):
            raise TypeError(f"{self.kind} {name!r}: config must be a pydantic model class, got {config!r}")
        existing = self._entries.get(name)
        if existing is not None and not override:
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is already registered by plugin {existing.plugin!r}; plugin "
                f"{self._plugin!r} tried again. Pick another name, or pass override=True to replace it."
            )
        summary = summary or (factory.__doc__ or "").strip().split("\n")[0]
        self._entries[name] = RegistryEntry(self.kind, name, factory, config, summary, self._plugin,
                                            tuple(inputs), tuple(optional_inputs))

    def get(self, name: str) -> RegistryEntry:
        try:
            return self._entries[name]
        except KeyError:
            hint = ""
            if self.broken_plugins:
                hint = "Plugins that failed to load: " + "; ".join(
                    f"{p} ({e})" for p, e in self.broken_plugins.items())
            raise UnknownComponentError(self.kind, name, self._entries, hint) from None

    def build(self, name: str, options: Mapping[str, Any] | None = None) -> Any:
        return self.get(name).build(options)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[RegistryEntry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.contextmanager
    def attributed_to(self, plugin: str) -> Iterator[None]:
        previous, self._plugin = self._plugin, plugin
        try:
            yield
        finally:
            self._plugin = previous


class Registries:
    """One :class:`Registry` per kind, as attributes (``registries.filters``) and by name."""

    def __init__(self) -> None:
        for kind in KINDS:
            setattr(self, kind, Registry(kind))

    def __getitem__(self, kind: str) -> Registry:
        if kind not in KINDS:
            raise UnknownComponentError("component kind", kind, KINDS)
        return getattr(self, kind)

    def all(self) -> list[Registry]:
        return [self[k] for k in KINDS]

    # Type hints for editors; set in __init__.
    readers: Registry
    writers: Registry
    filters: Registry
    transforms: Registry
    stages: Registry
    losses: Registry
    advantage_estimators: Registry
    verifiers: Registry
    eval_tasks: Registry
    engines: Registry
    rollout_engines: Registry
    precision_recipes: Registry
    context_extensions: Registry
    executors: Registry
    callbacks: Registry
    commands: Registry


def resolve_kind(kind: str) -> str:
    """Accept the singular as users type it (``stage``) as well as the plural (``stages``)."""
    if kind in KINDS:
        return kind
    for candidate in (kind + "s", kind + "es"):
        if candidate in KINDS:
            return candidate
    if kind.endswith("y") and kind[:-1] + "ies" in KINDS:
        return kind[:-1] + "ies"
    raise UnknownComponentError("component kind", kind, KINDS)
