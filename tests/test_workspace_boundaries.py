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


CORE_SRC = ROOT / "packages" / "llm-core" / "src" / "llm_core"


def _module_level_imports(source: Path) -> list[str]:
    """Modules imported at module level, including under ``if TYPE_CHECKING:`` (not inside functions)."""
    tree = ast.parse(source.read_text())
    nodes = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If):
            nodes += node.body
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_core_never_imports_torch_at_module_level():
    """torch and ray load only inside the functions that need them; numpy only in the token-folder
    module, which nothing on the CLI's start-up path imports (checked below)."""
    for source in CORE_SRC.rglob("*.py"):
        heavy = {"torch", "ray"} | ({"numpy"} if source.name != "tokens.py" else set())
        names = _module_level_imports(source)
        assert not any(n.split(".")[0] in heavy for n in names), source


def test_importing_core_and_its_cli_loads_no_numpy_or_torch():
    import subprocess
    import sys

    code = ("import sys, llm_core, llm_core.cli, llm_core.runner, llm_core.config, llm_core.training, "
            "llm_core.engines, llm_core.data_io; print(sorted(m for m in ('numpy', 'torch', 'ray') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_import_cycle_inside_core():
    """Modules of llm_core form no cycle through their module-level imports (type-only ones included)."""
    import graphlib

    modules = {p.relative_to(CORE_SRC.parent).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__"): p
               for p in CORE_SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = {n for n in _module_level_imports(path) if n in modules and n != name}
        graph[name] = deps - {"llm_core"}  # the package's __init__ re-exports; it is not a dependency
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle in llm_core: {' -> '.join(exc.args[1])}") from None
