"""Users install only what they need: core plus one package, as wheels, in a fresh virtual env.

Slow (it builds wheels and installs their third-party dependencies): `uv run pytest -m slow`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
WORKSPACE = {tomllib.loads(p.read_text())["project"]["name"]
             for group in ("packages", "integration", "plugins") for p in (ROOT / group).glob("*/pyproject.toml")}
# Feature packages (light ones first); the example verifier stands in while packages/ holds only core.
CANDIDATES = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml") if p.parent.name != "llm-core")
CANDIDATES = CANDIDATES or ["llmt-example-verifier"]


def _member_dir(dist: str) -> Path:
    return next(p.parent for group in ("packages", "integration", "plugins")
                for p in (ROOT / group).glob(f"{dist}/pyproject.toml"))


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def _name(requirement: str) -> str:
    for sep in (";", "[", "=", ">", "<", "!", "~", " "):
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


@pytest.mark.slow
@pytest.mark.parametrize("dist", CANDIDATES)
def test_core_plus_one_package_in_a_fresh_venv(dist, tmp_path):
    uv = shutil.which("uv")
    assert uv, "uv must be on PATH"
    wheels = tmp_path / "wheels"
    for package in ("llm-core", dist):
        subprocess.run([uv, "build", "--package", package, "--wheel", "-o", str(wheels)], cwd=ROOT,
                       check=True, capture_output=True, timeout=600)
    built = {w.name.split("-")[0].replace("_", "-"): w for w in wheels.glob("*.whl")}
    for package, wheel in built.items():
        siblings = {_name(r) for r in _requires(wheel) if "extra ==" not in r} & WORKSPACE
        assert siblings <= {"llm-core"}, f"{package} wheel requires workspace members {siblings}"

    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", str(venv), "--python", "3.11", "-q"], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *map(str, built.values())],
                   check=True, timeout=900)
    out = subprocess.run([str(venv / "bin" / "llmt"), "plugins", "--json"], capture_output=True, text=True,
                         check=True, timeout=300)
    listing = json.loads(out.stdout)
    entry_point = next(iter(tomllib.loads((_member_dir(dist) / "pyproject.toml").read_text())
                            ["project"]["entry-points"]["llmt"]))
    assert {p["name"] for p in listing["plugins"]} == {"core", entry_point}
    assert all(not p["error"] for p in listing["plugins"])
    owners = {owner for kind in listing["components"].values() for owner in kind.values()}
    assert owners == {"core", entry_point}
