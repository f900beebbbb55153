"""Plugin discovery and the one facade through which hooks are called.

Entry points of the ``llmt`` group are loaded lazily (on first use) and each in isolation: a
plugin that fails to import, or implements a hook that does not exist, is recorded as broken and
left out; the rest work. ``LLMT_PLUGINS`` (comma-separated entry-point names) keeps only those
plugins; ``LLMT_DISABLE_PLUGINS`` drops the ones it names.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from llm_core import hookspecs
from llm_core.errors import close_matches
from llm_core.registry import KINDS, Registries

ENTRY_POINT_GROUP = hookspecs.PROJECT


@dataclass
class PluginInfo:
    name: str  # entry-point name
    module: str
    distribution: str
    version: str
    error: str = ""  # empty when it loaded and registered cleanly


@dataclass
class PluginHost:
    """Owns the pluggy manager; the only code that calls ``pm.hook``."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    _registries: Registries | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def discover(cls, entry_points: list[importlib.metadata.EntryPoint] | None = None) -> PluginHost:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        host = cls(pm)
        allow = _env_list("LLMT_PLUGINS")
        block = _env_list("LLMT_DISABLE_PLUGINS")
        eps = entry_points if entry_points is not None else _llmt_entry_points()
        for ep in sorted(eps, key=lambda e: (e.name != "core", e.name)):  # built-ins first
            if (allow and ep.name not in allow) or ep.name in block:
                continue
            host._load_one(ep)
        return host

    def _load_one(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        info = PluginInfo(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "?")
        self.plugins.append(info)
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure makes the plugin broken, not us
            info.error = f"import failed: {type(exc).__name__}: {exc}"
            return
        unknown = _unknown_hooks(module)
        if unknown:
            info.error = "; ".join(_unknown_hook_message(h) for h in unknown)
            return
        try:
            self.pm.register(module, name=ep.name)
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001
            info.error = f"registration failed: {exc}"
            if self.pm.is_registered(module):
                self.pm.unregister(module)

    def register_module(self, module: Any, name: str) -> None:
        """Register an in-process plugin (tests, notebooks) as if it came from an entry point."""
        self.pm.register(module, name=name)
        self.pm.check_pending()
        self.plugins.append(PluginInfo(name, getattr(module, "__name__", repr(module)), "<in-process>", ""))
        self._registries = None

    # -- the facade: one method per hook ---------------------------------------------------

    @property
    def registries(self) -> Registries:
        """All registries, filled on first access by calling every plugin's ``register_*``."""
        with self._lock:
            if self._registries is None:
                self._registries = self._build_registries()
            return self._registries

    def _build_registries(self) -> Registries:
        registries = Registries()
        for kind in KINDS:
            registry = registries[kind]
            self._call_each(f"register_{kind}", lambda fn, reg=registry: fn(registry=reg), registry)
        broken = {p.name: p.error for p in self.plugins if p.error}
        for registry in registries.all():
            registry.broken_plugins = broken
        return registries

    def _call_each(self, hook_name: str, call: Callable[[Callable[..., Any]], Any], registry=None) -> list[Any]:
        """Call one hook plugin by plugin, so that a plugin raising is isolated and attributed."""
        results = []
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            plugin = impl.plugin_name
            info = next((p for p in self.plugins if p.name == plugin), None)
            if info is not None and info.error:
                continue
            try:
                if registry is not None:
                    with registry.attributed_to(plugin):
                        results.append(call(impl.function))
                else:
                    results.append(call(impl.function))
            except Exception as exc:  # noqa: BLE001
                if info is None or registry is None:
                    raise
                info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
        return results

    def validate_pipeline(self, recipe: Any, registries: Registries) -> list[str]:
        """Every plugin's problems with the recipe; a plugin that raises becomes a problem too."""
        problems: list[str] = []
        for impl in self.pm.hook.validate_pipeline.get_hookimpls():
            try:
                problems.extend(impl.function(recipe=recipe, registries=registries) or [])
            except Exception as exc:  # noqa: BLE001 - one plugin's bug must not hide the others' findings
                problems.append(f"plugin {impl.plugin_name!r}: validate_pipeline raised "
                                f"{type(exc).__name__}: {exc}")
        return problems

    def on_pipeline_start(self, recipe: Any, root: str) -> None:
        self.pm.hook.on_pipeline_start(recipe=recipe, root=root)

    def on_pipeline_end(self, recipe: Any, root: str, results: dict[str, Any]) -> None:
        self.pm.hook.on_pipeline_end(recipe=recipe, root=root, results=results)

    def on_stage_start(self, stage: str, ctx: Any) -> None:
        self.pm.hook.on_stage_start(stage=stage, ctx=ctx)

    def on_stage_end(self, stage: str, ctx: Any, result: Any) -> None:
        self.pm.hook.on_stage_end(stage=stage, ctx=ctx, result=result)


def _env_list(var: str) -> set[str]:
    return {p.strip() for p in os.environ.get(var, "").split(",") if p.strip()}


def _llmt_entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _unknown_hook_message(name: str) -> str:
    close = close_matches(name, _spec_names())
    return f"implements unknown hook {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _spec_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith(("register_", "validate_", "on_"))]


def _unknown_hooks(module: Any) -> list[str]:
    """Names of functions marked as ``llmt`` hook implementations that match no hookspec."""
    marker = hookspecs.PROJECT + "_impl"
    specs = set(_spec_names())
    return sorted(n for n in dir(module) if hasattr(getattr(module, n, None), marker) and n not in specs)


_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_host() -> PluginHost:
    """The process-wide plugin host, discovered once on first use."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost.discover()
        return _host


def get_registries() -> Registries:
    return get_host().registries


def reset_host(host: PluginHost | None = None) -> None:
    """Forget the discovered plugins (tests; after ``LLMT_PLUGINS`` changes)."""
    global _host
    with _host_lock:
        _host = host
