"""Every hook is documented and exercised: adding a hook without both fails here."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pluggy

from llm_core import hookimpl, hookspecs
from llm_core.config import validate_recipe
from llm_core.plugins import PluginHost
from llm_core.registry import KINDS
from llm_core.runner import PipelineRunner

SPEC_NAMES = sorted(n for n, f in vars(hookspecs).items()
                    if inspect.isfunction(f) and hasattr(f, hookspecs.PROJECT + "_spec"))
README = Path(__file__).parents[1] / "README.md"


def test_every_registration_kind_has_a_hook():
    assert {f"register_{k}" for k in KINDS} <= set(SPEC_NAMES)


def test_every_hookspec_is_documented():
    readme = README.read_text()
    for name in SPEC_NAMES:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 40, f"hookspec {name} needs a docstring saying when it runs and what it returns"
        assert "return" in doc.lower() or "ignored" in doc.lower(), f"{name}: say what it returns"
        assert f"`{name}`" in readme, f"hookspec {name} is missing from packages/llm-core/README.md"


def _recording_plugin(calls: list[str]) -> types.ModuleType:
    """An in-process plugin implementing every hook, each recording that it was called."""
    plugin = types.ModuleType("recorder")
    for name in SPEC_NAMES:
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)

        def impl(__name=name, **kwargs):
            calls.append(__name)
            if __name == "register_stages":
                kwargs["registry"].add("echo", EchoStage, summary="test stage")
            return [] if __name == "validate_pipeline" else None

        impl.__signature__ = inspect.Signature(
            [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in params])
        setattr(plugin, name, hookimpl(_named(impl, name)))
    return plugin


def _named(fn, name):
    fn.__name__ = name
    return fn


class EchoStage:
    def run(self, ctx):
        ctx.log_metrics({"ok": 1})


def test_every_hook_is_called(memory_root):
    calls: list[str] = []
    host = PluginHost.discover(entry_points=[])
    # pluggy reads argument names from the signature; wrap with explicit parameters.
    plugin = _recording_plugin(calls)
    host.register_module(plugin, "recorder")
    host.register_module(_core_builtins(), "core")
    recipe = validate_recipe({"name": "hooks", "executor": {"kind": "local", "workers": 1},
                              "stages": [{"name": "echo", "kind": "echo"}]}, host.registries, host)
    PipelineRunner(recipe, memory_root, host).run()
    missing = set(SPEC_NAMES) - set(calls)
    assert not missing, f"hooks never called: {sorted(missing)}"


def _core_builtins():
    from llm_core.builtins import hooks

    return hooks


def test_misspelled_hook_makes_the_plugin_broken():
    plugin = types.ModuleType("typo_plugin")

    @hookimpl
    def register_filter(registry):  # missing the final "s"
        raise AssertionError("never called")

    plugin.register_filter = register_filter
    assert isinstance(pluggy.HookimplMarker(hookspecs.PROJECT), pluggy.HookimplMarker)
    from llm_core.plugins import _unknown_hooks

    assert _unknown_hooks(plugin) == ["register_filter"]
