"""The dependency rule of DESIGN.md section 3, checked on the source and on the metadata."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
FEATURE_DIRS = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())
MEMBERS = sorted(p.parent for group in ("packages", "integration", "plugins")
                 for p in (ROOT / group).glob("*/pyproject.toml"))
WORKSPACE_DISTS = {tomllib.loads((m / "pyproject.toml").read_text())["project"]["name"] for m in MEMBERS}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_feature_packages_import_only_core():
    feature_modules = {p.name.replace("-", "_") for p in FEATURE_DIRS}
    integration_modules = {p.name.replace("-", "_") for p in (ROOT / "integration").iterdir() if p.is_dir()}
    problems = []
    for package in FEATURE_DIRS:
        own = package.name.replace("-", "_")
        for source in (package / "src").rglob("*.py"):
            for line, module in _imports(source):
                head = module.split(".")[0]
                if head in (feature_modules | integration_modules) - {own, "llm_core"}:
                    problems.append(f"{source.relative_to(ROOT)}:{line} imports {head}")
    assert not problems, "feature packages may import only llm_core:\n" + "\n".join(problems)


def test_feature_packages_declare_no_sibling_dependency():
    for package in FEATURE_DIRS:
        project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
        declared = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            declared += extra
        names = {d.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip() for d in declared}
        siblings = (names & WORKSPACE_DISTS) - {"llm-core"}
        assert not siblings, f"{package.name} depends on {siblings}"


def test_core_never_imports_torch_at_module_level():
    for source in (ROOT / "packages" / "llm-core" / "src").rglob("*.py"):
        tree = ast.parse(source.read_text())
        for node in tree.body:  # module level only; imports inside functions are lazy and fine
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in {"torch", "ray", "numpy"} for n in names), source
