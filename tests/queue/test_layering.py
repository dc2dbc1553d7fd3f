"""The queue engine stands on its own: shared code that servers and the orchestrator use, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import chiffon.shared.queue as queue_package

QUEUE_DIR = Path(queue_package.__file__).parent


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import in ``path``, at any depth (functions too): ``(module, names)``."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", [alias.name for alias in node.names]))
    return found


def test_the_queue_imports_no_server_and_no_orchestrator() -> None:
    modules = sorted(QUEUE_DIR.glob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "engine.py", "worker.py", "recorder.py"}
    bad = [(p.name, module) for p in modules for module, _ in imports(p)
           if module.startswith(("chiffon.servers", "chiffon.orchestrator", "servers", "orchestrator"))]
    assert bad == []


def test_the_queue_modules_import_no_private_names() -> None:
    bad = [(p.name, module, name) for p in sorted(QUEUE_DIR.glob("*.py")) for module, names in imports(p)
           if module.startswith("chiffon.") for name in names if name.startswith("_")]
    assert bad == []
