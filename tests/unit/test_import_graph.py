"""The import graph of chiffon's own modules: no circles, and arrows point down (issue 31).

Every ``.py`` under ``servers/``, ``orchestrator/`` and ``shared/`` is parsed with :mod:`ast`, never imported.
Every import counts, wherever it is written: at the top, inside a function, under ``if TYPE_CHECKING:``.
``from X import name`` is an arrow to ``X``, and to ``X.name`` too when that is a module; relative imports
(``from . import x``, ``from ..a import b``) are resolved against the importing file's package. A package's
``__init__.py`` is the package's own module; importing a submodule is an arrow to it only, not to the packages
above it (Python runs those first, but every package that imports its own submodules would then be a circle).

The layers, top to bottom: ``orchestrator`` composes the servers; a server may use another server and
``shared``; ``shared`` uses nothing above it. ``shared.queue`` (the queue engine every kind of task runs on)
names no server.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("servers", "orchestrator", "shared")
PACKAGE = "chiffon"

def module_name(path: Path) -> str:
    """``servers/llm/router.py`` -> ``chiffon.servers.llm.router``; ``shared/__init__.py`` -> ``chiffon.shared``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def source_files() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` of the layers (caches and virtual environments left out)."""
    files: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if "__pycache__" in path.parts or any(p.startswith(".") for p in path.relative_to(ROOT).parts):
                continue
            files[module_name(path)] = path
    return files


def imported_names(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """Every name ``module`` (the file ``path``) imports, with its line: dotted names, relative ones resolved;
    for ``from X import a``, both ``X`` and ``X.a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                if alias.name != "*":
                    yield f"{target}.{alias.name}", node.lineno


def import_graph() -> dict[str, dict[str, str]]:
    """``{module: {imported chiffon module: "file:line" of the first import}}`` over the layers' modules."""
    files = source_files()
    graph: dict[str, dict[str, str]] = {m: {} for m in files}
    for module, path in files.items():
        for name, line in imported_names(path, module):
            if name in files and name != module:
                graph[module].setdefault(name, f"{path.relative_to(ROOT)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module, as a closed path ``[a, b, ..., a]``
    through the component."""
    return [_circle(graph, set(c)) for c in components(graph)]


def components(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:  # iterative, so a deep graph cannot overflow Python's stack
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _circle(graph: dict[str, dict[str, str]], component: set[str]) -> list[str]:
    """A shortest closed path from the component's first module back to it, staying inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    return [*paths[node], start]
                if child in component and child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"no circle through {start}")  # a strongly connected component always has one


def describe(graph: dict[str, dict[str, str]], circle: list[str]) -> str:
    """``a -> b (file:line) -> a (file:line)``."""
    return circle[0] + "".join(f" -> {b} ({graph[a][b]})" for a, b in zip(circle, circle[1:], strict=False))


def arrows(graph: dict[str, dict[str, str]], source: str, target: str) -> list[str]:
    """Imports from modules under ``source`` of modules under ``target``, as ``a -> b (file:line)``."""
    def under(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    return [f"{a} -> {b} ({where})" for a, imports in sorted(graph.items()) if under(a, source)
            for b, where in sorted(imports.items()) if under(b, target)]


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "chiffon.servers.llm.backends.base" in graph["chiffon.servers.llm.backends.llamacpp"]  # at the top
    assert "chiffon.servers.llm.backends.llamacpp" in graph["chiffon.servers.llm.backends"]  # inside a function
    assert "chiffon.shared.metrics" in graph["chiffon.servers.llm.router"]  # from chiffon.shared import metrics
    assert len(graph) > 100


def test_relative_imports_resolve_against_the_package(tmp_path: Path) -> None:
    init = tmp_path / "__init__.py"
    init.write_text("from . import a\nfrom .b import c\n")
    module = tmp_path / "mod.py"
    module.write_text("from . import a\nfrom ..up import d\n")
    assert {n for n, _ in imported_names(init, "chiffon.pkg")} == {"chiffon.pkg", "chiffon.pkg.a", "chiffon.pkg.b",
                                                                    "chiffon.pkg.b.c"}
    assert {n for n, _ in imported_names(module, "chiffon.pkg.mod")} == {"chiffon.pkg", "chiffon.pkg.a",
                                                                          "chiffon.up", "chiffon.up.d"}


def test_a_circle_is_found_and_named() -> None:
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2"}, "c": {"a": "c.py:3"}, "d": {"a": "d.py:4"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert describe(graph, ["a", "b", "c", "a"]) == "a -> b (a.py:1) -> c (b.py:2) -> a (c.py:3)"


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(describe(graph, c) for c in found)


def test_servers_never_import_the_orchestrator() -> None:
    assert arrows(import_graph(), "chiffon.servers", "chiffon.orchestrator") == []


def test_shared_imports_no_server_and_not_the_orchestrator() -> None:
    graph = import_graph()
    assert arrows(graph, "chiffon.shared", "chiffon.servers") + arrows(graph, "chiffon.shared",
                                                                        "chiffon.orchestrator") == []


def test_the_queue_engine_imports_no_server() -> None:
    assert arrows(import_graph(), "chiffon.shared.queue", "chiffon.servers") == []  # nothing while it does not exist
