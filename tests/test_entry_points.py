"""Every workspace member's entry points load, and all plugins register without error."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from llm_core.plugins import PluginHost

ROOT = Path(__file__).parents[1]
MEMBERS = sorted(p.parent for group in ("packages", "integration", "plugins")
                 for p in (ROOT / group).glob("*/pyproject.toml"))


def _declared() -> list[tuple[str, str, str]]:
    out = []
    for member in MEMBERS:
        project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
        for name, value in project.get("entry-points", {}).get("llmt", {}).items():
            out.append((project["name"], name, value))
    return out


def test_every_member_declares_one_entry_point_to_its_hooks_module():
    for member in MEMBERS:
        project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
        eps = project.get("entry-points", {}).get("llmt", {})
        assert len(eps) == 1, f"{project['name']} must register exactly one llmt entry point"
        assert next(iter(eps.values())).endswith(".hooks")


@pytest.mark.parametrize(("dist", "name", "value"), _declared())
def test_entry_point_is_installed_and_loads(dist, name, value):
    installed = {ep.name: ep for ep in importlib.metadata.entry_points(group="llmt")}
    assert name in installed, f"{dist}: entry point {name} not installed; run uv sync"
    assert installed[name].value == value
    installed[name].load()


def test_all_installed_plugins_register_cleanly():
    host = PluginHost.discover()
    host.registries  # noqa: B018 - runs every register_* hook
    broken = {p.name: p.error for p in host.plugins if p.error}
    assert not broken
    assert {d[1] for d in _declared()} <= {p.name for p in host.plugins}
