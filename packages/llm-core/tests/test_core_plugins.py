"""Plugins as users meet them: real entry points of installed distributions, broken ones included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RECIPES = Path(__file__).parents[3] / "integration" / "recipes"

PLUGINS = {
    "broken_import": "raise ImportError('needs the package frobnicate, which is not installed')\n",
    "typo_hook": textwrap.dedent("""
        from llm_core import hookimpl

        @hookimpl
        def register_filter(registry):   # misspelled: the hook is register_filters
            pass
        """),
    "raises_on_register": textwrap.dedent("""
        from llm_core import hookimpl

        @hookimpl
        def register_filters(registry):
            raise RuntimeError("boom")
        """),
    "good_extra": textwrap.dedent("""
        from llm_core import hookimpl

        class NoDigits:
            def filter(self, doc):
                return "no_digits:has_digit" if any(c.isdigit() for c in doc.text) else None

        @hookimpl
        def register_filters(registry):
            registry.add("no_digits", NoDigits, summary="drops documents with digits")
        """),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder of installed-looking distributions, each with an ``llmt`` entry point."""
    root = tmp_path_factory.mktemp("site")
    for name, source in PLUGINS.items():
        (root / f"{name}_plugin.py").write_text(source)
        dist = root / f"{name}_plugin-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[llmt]\n{name.replace('_', '-')} = {name}_plugin\n")
    return root


def _llmt(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run([sys.executable, "-m", "llm_core.cli", *args], capture_output=True, text=True,
                          env=environ, timeout=300)


def test_broken_plugins_are_listed_with_their_errors(site):
    out = _llmt(site, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert "frobnicate" in plugins["broken-import"]["error"]
    assert "unknown hook 'register_filter'" in plugins["typo-hook"]["error"]
    assert "did you mean 'register_filters'" in plugins["typo-hook"]["error"]
    assert "boom" in plugins["raises-on-register"]["error"]
    assert plugins["good-extra"]["error"] == "" and plugins["core"]["error"] == ""
    components = json.loads(out.stdout)["components"]
    assert components["filters"]["no_digits"] == "good-extra"
    assert components["stages"]["filter"] == "core"


def test_human_listing_shows_broken_plugins(site):
    out = _llmt(site, "plugins")
    assert out.returncode == 0
    assert "broken" in out.stdout and "broken-import" in out.stdout


def test_a_run_not_using_a_broken_plugin_works(site, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text((RECIPES / "data-demo.toml").read_text().replace("num_docs = 20000", "num_docs = 300"))
    out = _llmt(site, "run", str(recipe), "--root", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    assert "clean:" in out.stdout


def test_a_run_using_a_missing_component_names_the_broken_plugins(site, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(textwrap.dedent("""
        name = "uses-broken"
        [[stages]]
        name = "gen"
        kind = "synthetic_text"
        [[stages]]
        name = "clean"
        kind = "filter"
        inputs = { documents = "gen/documents" }
        steps = [{ filter = "frobnicate" }]
        """))
    out = _llmt(site, "validate", str(recipe))
    assert out.returncode == 1
    assert "unknown filter 'frobnicate'" in out.stderr
    assert "broken-import" in out.stderr


def test_allow_and_block_lists(site):
    only = json.loads(_llmt(site, "plugins", "--json", LLMT_PLUGINS="core,good-extra").stdout)
    assert {p["name"] for p in only["plugins"]} == {"core", "good-extra"}
    blocked = json.loads(_llmt(site, "plugins", "--json", LLMT_DISABLE_PLUGINS="good-extra").stdout)
    names = {p["name"] for p in blocked["plugins"]}
    assert "good-extra" not in names and "core" in names
    assert "no_digits" not in blocked["components"]["filters"]
