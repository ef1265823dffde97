"""The package's shape: three layers whose imports point one way, no cycles, no borrowed private names.

``docs/architecture.md`` describes the layers; these tests keep the code to it.
The import graph is read from the source (every ``import`` statement, at module
level, inside functions and under ``TYPE_CHECKING``), and the layer contracts in
``pyproject.toml`` are checked by import-linter's ``lint-imports``.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT

PACKAGE = "bokeh_flask"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        found[_module_name(path, root)] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return found


def _imports(name: str, path: Path, tree: ast.Module, known: set[str]) -> list[tuple[ast.stmt, str, list[str]]]:
    """Every import statement of a module: (statement, imported module, names taken from it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            found += [(node, module, []) for module in submodules]
            found.append((node, target, [n for n in names if f"{target}.{n}" not in known]))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, counting every import statement."""
    modules = _modules(root)
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, tree) in modules.items():
        for _, target, _ in _imports(name, path, tree, known):
            if target in known and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph(REPO_ROOT)
    assert len(graph) > 30 and graph[f"{PACKAGE}.web.extension"]  # the graph was really read
    assert cycles(graph) == []


def test_no_module_imports_another_modules_private_names():
    modules = _modules(REPO_ROOT)
    borrowed = [f"{name}: {', '.join(names)} from {target}"
                for name, (path, tree) in modules.items()
                for _, target, names in _imports(name, path, tree, set(modules))
                if target.startswith(PACKAGE) and target != name
                for names in [[n for n in names if n.startswith("_")]] if names]
    assert borrowed == []


def test_function_level_imports_say_why():
    """An import inside a function is kept only with a comment giving its reason (same or previous line)."""
    unexplained = []
    for name, (path, tree) in _modules(REPO_ROOT).items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    if not _explained(lines, node.lineno - 1):
                        unexplained.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == []


def _explained(lines: list[str], at: int) -> bool:
    """A comment on the import's line, or above the block of imports it belongs to."""
    if "#" in lines[at]:
        return True
    above = at - 1
    while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(executable)], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_layer_contracts_hold():
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("core/errors.py", "import flask", "The core imports bokeh and the standard library only"),
    ("core/tokens.py", "from ..web import current", "Layers: runtime -> web -> core"),
    ("web/pages.py", "import gevent", "The web layer leaves concurrency and websockets to the runtime"),
    ("client/session.py", "from ..web import current", "The publishing client uses the core only"),
    ("web/published.py", "from .. import client", "The server does not import the client"),
])
def test_breaking_a_contract_fails_the_check(tmp_path, module, line, contract):
    shutil.copytree(REPO_ROOT / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    broken = tmp_path / PACKAGE / module
    broken.write_text(broken.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout
