"""Wire once: services are built only in the composition root (``orchestrator/compose.py``) and never patched
after construction (CONVENTIONS.md, "Wire once"; issue 31, "One builder").

These read the source (pathlib and ``ast``: calls and assignments, not comments or docstrings), so a new module
that builds its own ansible service, tasks service or infra worker, or sets a service's collaborators afterwards,
fails here with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("orchestrator", "servers")
COMPOSE = Path("orchestrator/compose.py")
# What builds a service or starts an infra worker, and the modules allowed to: the composition root and each
# service's own module (where the class, its constructor or the worker is defined).
BUILDERS: dict[str, set[Path]] = {
    "AnsibleService": {COMPOSE, Path("servers/ansible/service.py")},
    "AnsibleService.for_runtime": {COMPOSE, Path("servers/ansible/service.py")},
    "TasksService": {COMPOSE, Path("servers/tasks/service.py")},
    "running_infra_worker": {COMPOSE, Path("orchestrator/runs.py")},
}
# A service's collaborators, given at construction by the composition root: nothing assigns them afterwards.
COLLABORATORS = ("run_plan", "notify_drift")


def _modules() -> list[tuple[Path, ast.Module]]:
    found = [(path.relative_to(ROOT), ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
             for folder in SOURCE_DIRS for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(found) > 20, f"no source found under {ROOT}: the checks below would pass vacuously"
    return found


def _called(node: ast.Call) -> str | None:
    """``Name(`` or ``Name.attr(`` for a call of a name or of an attribute of a name; else None."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return None


def _builder_calls(tree: ast.Module) -> list[tuple[str, int]]:
    return [(name, node.lineno) for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (name := _called(node)) in BUILDERS]


def _collaborator_assignments(tree: ast.Module) -> list[tuple[str, int]]:
    """``x.run_plan = ...`` (also augmented, annotated or in a tuple) and ``setattr(x, "run_plan", ...)``."""
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in COLLABORATORS):
            found.append((f"setattr(..., {node.args[1].value!r})", node.lineno))
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        else:
            continue
        found += [(f".{part.attr} =", node.lineno) for target in targets for part in ast.walk(target)
                  if isinstance(part, ast.Attribute) and part.attr in COLLABORATORS]
    return found


def test_services_and_the_infra_worker_are_built_only_in_the_composition_root() -> None:
    elsewhere = [f"{path}:{line}: {name}(" for path, tree in _modules() for name, line in _builder_calls(tree)
                 if path not in BUILDERS[name]]
    assert elsewhere == [], "build services in orchestrator/compose.py (open_infra, infra_service, open_agents, " \
                            "open_console, open_orchestrator), not here:\n" + "\n".join(elsewhere)


def test_the_composition_root_builds_the_ansible_service_and_its_worker() -> None:
    """The check above looks at real calls: the composition root's own are found (it is not vacuous)."""
    tree = ast.parse((ROOT / COMPOSE).read_text(encoding="utf-8"))
    assert {"AnsibleService.for_runtime", "running_infra_worker"} <= {name for name, _ in _builder_calls(tree)}


def test_no_module_sets_a_service_collaborator_after_construction() -> None:
    patched = [f"{path}:{line}: {what}" for path, tree in _modules() for what, line in _collaborator_assignments(tree)]
    assert patched == [], "give run_plan / notify_drift at construction (orchestrator/compose.py), never " \
                          "afterwards:\n" + "\n".join(patched)


@pytest.mark.parametrize("source, expected", [
    ("svc.run_plan = dispatch_run", [(".run_plan =", 1)]),
    ("svc.notify_drift = svc.notify_drift or notify", [(".notify_drift =", 1)]),
    ("a.b.run_plan: object = None", [(".run_plan =", 1)]),
    ("setattr(svc, 'notify_drift', notify)", [("setattr(..., 'notify_drift')", 1)]),
    ("run_plan = dispatch_run\nsvc = AnsibleService(rt, repo, run_plan=run_plan)", []),
])
def test_the_collaborator_check_sees_assignments_to_attributes_only(source: str, expected: list[tuple[str, int]]) -> None:
    assert _collaborator_assignments(ast.parse(source)) == expected


def test_the_builder_check_sees_calls_not_mentions() -> None:
    source = '"""Built by AnsibleService.for_runtime(rt) in compose."""\n# TasksService(rt)\nx = TasksService(rt)\n'
    assert _builder_calls(ast.parse(source)) == [("TasksService", 3)]
