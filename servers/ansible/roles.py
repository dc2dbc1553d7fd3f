"""Roles of a repo, read statically: what each one is called, says and does.

A folder is a role when it holds ``tasks/main.yml|yaml`` or ``meta/main.yml|yaml``
(Ansible's role layout, https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_reuse_roles.html).
Its name is its path below the nearest ``roles`` folder or ``roles_path`` entry
(``roles/containers/jellyfin`` -> ``containers/jellyfin``), which is how a play names
it; its short name is the last part (``jellyfin``).

The text chiffon matches requests against: the role name, ``meta/main.yml``'s
``galaxy_info.description``, the README's first sentence, task names and default
variable names. ``tasks/main.yml``'s ``import_tasks``/``include_tasks`` entries with
their own tags are units of their own (one task file per service, ``tags: docker,jellyfin``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiffon.servers.ansible.containers import compose_services, containers_in_vars, containers_of
from chiffon.servers.ansible.plays import Application, Task, load_yaml, tags_of_tasks, walk_tasks

MAX_README_CHARS = 300
_MAIN = ("main.yml", "main.yaml")


def is_role_dir(path: Path) -> bool:
    """True when ``path`` has Ansible's role layout (``tasks/main.yml`` or ``meta/main.yml``)."""
    return any((path / sub / main).is_file() for sub in ("tasks", "meta") for main in _MAIN)


def role_files(path: Path) -> list[Path]:
    """The files of a role that :func:`parse_role` reads (for change detection)."""
    files = [p for p in sorted((path / "tasks").glob("*.y*ml"))] if (path / "tasks").is_dir() else []
    files += [path / sub / main for sub in ("meta", "defaults", "vars") for main in _MAIN if (path / sub / main).is_file()]
    files += [p for p in (path / "README.md", path / "README.rst", path / "README") if p.is_file()]
    return files


@dataclass(frozen=True)
class Role:
    """A role in the repo. ``path`` is relative to the repo root."""

    name: str
    path: str
    description: str
    task_names: tuple[str, ...]
    variables: tuple[str, ...]
    dependencies: tuple[str, ...]
    imports: tuple[Application, ...]  # task files tasks/main.yml imports, with their tags and conditions
    conditions: tuple[str, ...]  # ``when`` on tasks/main.yml entries
    task_tags: tuple[tuple[str, tuple[str, ...]], ...] = ()  # tags set on the role's tasks, with those tasks
    containers: tuple[str, ...] = ()  # containers and compose services it runs (tasks, vars, compose templates)

    @property
    def short(self) -> str:
        """Last part of the name: ``containers/jellyfin`` -> ``jellyfin``."""
        return self.name.rsplit("/", 1)[-1]


def _readme_sentence(path: Path) -> str:
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "=", "-", "[!", "![", "<", "|", "```")):
            continue
        return re.sub(r"[`*_]", "", line)[:MAX_README_CHARS]
    return ""


def _main_of(folder: Path) -> Any:
    for main in _MAIN:
        if (folder / main).is_file():
            return load_yaml((folder / main).read_text(errors="replace"))
    return None


def parse_role(root: Path, path: Path, name: str) -> Role:
    """Read the role at ``path`` (absolute) named ``name``."""
    meta = _main_of(path / "meta")
    meta = meta if isinstance(meta, dict) else {}
    galaxy = meta.get("galaxy_info")
    info = galaxy if isinstance(galaxy, dict) else {}
    description = str(info.get("description") or "").strip()
    if description.lower() in ("", "your role description", "your description"):
        description = ""
    for readme in (path / "README.md", path / "README.rst", path / "README"):
        if not description and readme.is_file():
            description = _readme_sentence(readme)
    deps = []
    for dep in meta.get("dependencies") or []:
        dep_name = dep.get("role") or dep.get("name") if isinstance(dep, dict) else dep
        if dep_name:
            deps.append(str(dep_name))
    names: list[str] = []
    imports: list[Application] = []
    conds: list[str] = []
    every: list[Task] = []
    for file in sorted((path / "tasks").glob("*.y*ml")) if (path / "tasks").is_dir() else []:
        items = load_yaml(file.read_text(errors="replace"))
        tasks, applied = walk_tasks(items)
        names.extend(t.name for t in tasks if t.name)
        every.extend(tasks)
        if file.stem == "main":
            imports.extend(a for a in applied if a.kind == "tasks")
            conds.extend(c for item in items or [] if isinstance(item, dict) for c in _when(item))
    variables: list[str] = []
    for sub in ("defaults", "vars"):
        data = _main_of(path / sub)
        if isinstance(data, dict):
            variables.extend(map(str, data))
    return Role(
        name=name, path=path.relative_to(root).as_posix(), description=description,
        task_names=tuple(dict.fromkeys(names)), variables=tuple(dict.fromkeys(variables)),
        dependencies=tuple(deps), imports=tuple(imports), conditions=tuple(dict.fromkeys(conds)),
        task_tags=tags_of_tasks(every), containers=tuple(dict.fromkeys(_containers(path, every))),
    )


MAX_TEMPLATE_BYTES = 200_000


def _containers(path: Path, tasks: list[Task]) -> list[str]:
    """Containers the role runs: from its tasks, its defaults' container lists, and its compose templates or
    files (``templates/docker-compose.yml.j2``: the keys under ``services:``)."""
    found = containers_of(tasks)
    for sub in ("defaults", "vars"):
        found += containers_in_vars(_main_of(path / sub))
    for folder in ("templates", "files"):
        for file in sorted((path / folder).rglob("*compose*")) if (path / folder).is_dir() else []:
            real = file.resolve()  # a symlink out of the role (to ~/.ssh, /proc) is never read
            if real.is_relative_to(path.resolve()) and real.is_file() and real.stat().st_size < MAX_TEMPLATE_BYTES:
                found += compose_services(real.read_text(errors="replace"))
    return found


def _when(item: dict[str, Any]) -> list[str]:
    value = item.get("when")
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []
