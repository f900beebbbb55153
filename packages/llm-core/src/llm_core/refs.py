"""Typed references to registered components inside a config: ``verifier = {name, options}``.

A stage that uses a verifier, a loss, an engine... declares a field of a reference type
(``VerifierRef``, ``LossRef``...). In a recipe the field is written as the component's name
(``loss = "grpo"``) or as a table (``loss = {name = "grpo", options = {clip_eps = 0.2}}``).
Validation checks every reference of every stage generically (``resolve_refs``): the name must be
registered (close names are suggested) and the options must fit the component's config, each
problem reported with its dotted path. Resolving also keeps the validated component config, so
building the component later (``ref.build(registries)``) validates nothing twice.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from llm_core.errors import close_matches
from llm_core.registry import KINDS, singular
from llm_core.schema import Config, pydantic_problems

if TYPE_CHECKING:  # pragma: no cover
    from llm_core.registry import Registries


class ComponentRef(Config):
    """A registered component of kind ``kind``, by name, with its options."""

    kind: ClassVar[str] = ""
    name: str = Field(description="registered name")
    options: dict[str, Any] = Field(default_factory=dict, description="options of that component")
    _config: Any = PrivateAttr(default=None)
    _resolved: bool = PrivateAttr(default=False)

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    def build(self, registries: Registries) -> Any:
        """The component, built from the config validated at resolution (or validated now)."""
        entry = registries[self.kind].get(self.name)
        return entry.build(self._config if self._resolved else self.options)

    def entry(self, registries: Registries) -> Any:
        return registries[self.kind].get(self.name)


def fold_options(field: str, options_key: str = "options") -> Any:
    """A ``mode="before"`` validator body that accepts a reference's options beside its name:
    ``{field = "math", options = {...}}`` becomes ``{field = {name = "math", options = {...}}}``
    (the flat form recipes have always used for steps and components)."""

    def fold(cls: Any, data: Any) -> Any:
        if isinstance(data, dict) and options_key in data and isinstance(data.get(field), str):
            data = dict(data)
            data[field] = {"name": data[field], "options": data.pop(options_key)}
        return data

    return classmethod(fold)


@functools.cache
def component_ref(kind: str) -> type[ComponentRef]:
    """The reference type for one registry kind (``component_ref("verifiers")``)."""
    title = _ref_name(kind)
    return type(title, (ComponentRef,), {"kind": kind, "__doc__": f"A registered {singular(kind)}.",
                                         "__module__": __name__, "__qualname__": title})


def _ref_name(kind: str) -> str:
    return "".join(part.title() for part in singular(kind).split(" ")) + "Ref"


def __getattr__(name: str) -> type[ComponentRef]:
    """Every kind's reference type by its name (``EngineRef``...), so that they pickle."""
    for kind in KINDS:
        if _ref_name(kind) == name:
            return component_ref(kind)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


VerifierRef = component_ref("verifiers")
LossRef = component_ref("losses")
EstimatorRef = component_ref("advantage_estimators")
CallbackRef = component_ref("callbacks")
FilterRef = component_ref("filters")
TransformRef = component_ref("transforms")
ReaderRef = component_ref("readers")
WriterRef = component_ref("writers")
PrecisionRef = component_ref("precision_recipes")
ContextExtensionRef = component_ref("context_extensions")
EvalTaskRef = component_ref("eval_tasks")


def iter_refs(value: Any, path: str) -> Iterator[tuple[str, ComponentRef]]:
    """Every reference inside a validated config, depth first, with its dotted path."""
    if isinstance(value, ComponentRef):
        yield path, value
        for name in type(value).model_fields:  # a spec's own references (EngineSpec.precision_recipe)
            if name not in ("name", "options"):
                yield from iter_refs(getattr(value, name), f"{path}.{name}")
        return
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from iter_refs(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from iter_refs(item, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_refs(item, f"{path}.{key}" if path else str(key))


def resolve_refs(config: Any, registries: Registries, where: str) -> list[str]:
    """Check every reference in ``config`` and keep each one's validated config. Returns problems."""
    problems: list[str] = []
    for path, ref in iter_refs(config, where):
        parsed, ref_problems = parse_component(registries[ref.kind], ref.name, ref.options, path, f"{path}.options")
        problems += ref_problems
        if not ref_problems:
            # Nested references (a weighted verifier's components) are checked in the same pass.
            problems += resolve_refs(parsed, registries, f"{path}.options")
            ref._config, ref._resolved = parsed, True
    return problems


def missing_modules(config: Any, where: str) -> list[str]:
    """Problems for every optional package a config (or a component inside it) needs and lacks."""
    import importlib.util

    problems = []
    for path, model in iter_configs(config, where):
        for module, install in model.required_modules().items():
            if importlib.util.find_spec(module) is None:
                problems.append(f"{path}: needs the Python package {module!r}, which is not installed; {install}")
    return problems


def iter_configs(value: Any, path: str) -> Iterator[tuple[str, Config]]:
    """Every config in a validated tree, components' resolved configs included."""
    if isinstance(value, ComponentRef):
        if value._resolved and value._config is not None:
            yield from iter_configs(value._config, f"{path}.options")
        for name in type(value).model_fields:  # a spec's own references (EngineSpec.precision_recipe)
            if name not in ("name", "options"):
                yield from iter_configs(getattr(value, name), f"{path}.{name}")
        return
    if isinstance(value, Config):
        yield path, value
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from iter_configs(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from iter_configs(item, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_configs(item, f"{path}.{key}")


def check_component(registry: Any, name: str, options: Mapping[str, Any], where: str) -> list[str]:
    """Problems with one named component and its options (written beside the name, as an
    executor's are): unknown name, bad or unknown options."""
    return parse_component(registry, name, options, where, where)[1]


def parse_component(registry: Any, name: str, options: Mapping[str, Any], where: str,
                    options_where: str) -> tuple[Any, list[str]]:
    """(validated config, problems) of one named component; ``options_where`` is the dotted path
    of its options. Any error a config raises while it validates (a bad regex, say) becomes a
    problem with that path: validation never crashes."""
    if name not in registry:
        hint = close_matches(name, registry.names())
        problem = (f"{where}: unknown {singular(registry.kind)} {name!r}"
                   + (f"; did you mean {hint[0]!r}?" if hint else "")
                   + f" Registered: {', '.join(registry.names()) or '(none)'}")
        if registry.broken_plugins:
            problem += " (plugins that failed to load: " + ", ".join(registry.broken_plugins) + ")"
        return None, [problem]
    entry = registry.get(name)
    try:
        return entry.parse(options), []
    except ValidationError as exc:
        return None, pydantic_problems(exc, options_where, list(entry.config.model_fields) if entry.config else [])
    except Exception as exc:  # noqa: BLE001 - a config's own check failing is the user's problem to see
        return None, [f"{options_where}: {type(exc).__name__}: {exc}"]
