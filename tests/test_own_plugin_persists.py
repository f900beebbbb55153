"""A user's own plugin, added to the workspace the documented way, survives ``uv sync``.

``uv pip install -e ./my-plugin`` puts a package into the environment behind the lock's back, and
the next ``uv sync`` (the README's set-up) removes it. The documented way records the plugin in
``pyproject.toml`` and ``uv.lock`` instead: ``uv add --dev --editable <folder>``. This test does
exactly that in a fresh clone, syncs, and checks that ``llmt plugins`` lists the plugin.

Slow (a fresh clone and its environment): ``uv run pytest -m slow``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_uv_add_editable_plugin_survives_uv_sync(tmp_path):
    uv = shutil.which("uv")
    assert uv, "uv must be on PATH"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    plugin = tmp_path / "my-llmt-plugin"
    (plugin / "src" / "my_llmt_plugin").mkdir(parents=True)
    (plugin / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "my-llmt-plugin"
        version = "0.1.0"
        dependencies = ["llm-core"]
        [project.entry-points.llmt]
        my-plugin = "my_llmt_plugin.hooks"
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [tool.hatch.build.targets.wheel]
        packages = ["src/my_llmt_plugin"]
        """))
    (plugin / "src" / "my_llmt_plugin" / "__init__.py").write_text("")
    (plugin / "src" / "my_llmt_plugin" / "hooks.py").write_text(textwrap.dedent("""
        from llm_core import hookimpl

        class Shout:
            def filter(self, doc):
                return "shout" if doc.text.isupper() else None

        @hookimpl
        def register_filters(registry):
            registry.add("shout", Shout, summary="drops shouting")
        """))
    run = lambda *args: subprocess.run([uv, *args], cwd=clone, check=True, capture_output=True, text=True,  # noqa: E731
                                       timeout=1200)
    run("add", "--dev", "--editable", str(plugin))
    run("sync")
    run("sync")  # the README's set-up, again: nothing the user added goes away
    listing = json.loads(run("run", "--no-sync", "llmt", "plugins", "--json").stdout)
    assert "my-plugin" in {p["name"] for p in listing["plugins"]}
    assert listing["components"]["filters"]["shout"] == "my-plugin"
