"""The import graph of the installed package has no circle, and the harness's modules all sit in its subpackages.

Every ``import prunebench...`` and ``from prunebench... import`` counts, at the top of a module or inside a
function (an import placed inside a function to dodge a circle is still a circle); imports under
``if TYPE_CHECKING:`` do not run and do not count. The graph is read from the sources of the installed packages
(``prunebench`` and its subpackages, wherever they are mapped from), and its strongly connected components must be
exactly the known ones (none): a new circle fails.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGES = ("prunebench", "prunebench.methods", "prunebench.datasets", "prunebench.leaderboard")
KNOWN: list[set[str]] = []


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
        for folder in spec.submodule_search_locations:
            for path in Path(folder).rglob("*.py"):
                parts = [package, *path.relative_to(folder).with_suffix("").parts]
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _runtime_imports(path: Path) -> set[str]:
    """The ``prunebench`` module names ``path`` imports when it runs (``TYPE_CHECKING`` blocks aside)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "prunebench"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    return {
        module: {target for name in _runtime_imports(path) if (target := resolve(name)) not in (None, module)}
        for module, path in modules.items()
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_the_finder_finds_a_circle_and_only_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    graph = _graph()
    assert len(graph) > 100, "the package's modules were not found"
    found = [
        {name.removeprefix("prunebench.") for name in component} for component in strongly_connected(graph)
    ]
    assert sorted(map(sorted, found)) == sorted(map(sorted, KNOWN))


def test_every_module_of_the_harness_is_in_a_subpackage_and_every_name_is_unique():
    modules = _modules()
    top_level = sorted(name for name in modules if name.count(".") == 1 and name.startswith("prunebench."))
    harness_top = [
        name for name in top_level if name.split(".")[1] not in ("methods", "datasets", "leaderboard")
    ]
    assert all(modules[name].name == "__init__.py" or name == "prunebench.cli" for name in harness_top), (
        harness_top
    )
    stems: dict[str, list[str]] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            stems.setdefault(path.stem, []).append(name)
    assert {stem: names for stem, names in stems.items() if len(names) > 1} == {}


def test_no_function_of_the_run_and_grid_layers_is_over_60_lines():
    long = []
    for name, path in _modules().items():
        if not name.startswith(
            ("prunebench.run.", "prunebench.grid.", "prunebench.structured.structured_run")
        ):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno >= 60
            ):
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []
