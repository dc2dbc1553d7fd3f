"""The containers and compose services a playbook or role runs, read statically: they name it as people do
("redeploy the Sonarr container" for a role whose compose template runs ``sonarr``).

- Tasks: ``docker_container`` / ``podman_container`` names, a compose project's name and the services of an
  inline ``definition``.
- Variables: lists of mappings with a ``name`` and an ``image`` (``containers: [{name: sonarr, image: ...}]``).
- Compose files: the keys under a top-level ``services:``.

Templated names (``{{ item }}``) are left out: nothing is templated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

CONTAINER_MODULES = {"docker_container", "community.docker.docker_container", "podman_container",
                     "containers.podman.podman_container", "community.general.docker_container"}
COMPOSE_MODULES = {"docker_compose", "docker_compose_v2", "community.docker.docker_compose",
                   "community.docker.docker_compose_v2", "containers.podman.podman_compose",
                   "docker_stack", "community.docker.docker_stack"}


class WrittenTask(Protocol):
    """What is read of a task here: its module and arguments as written (:class:`servers.ansible.plays.Task`,
    whose module imports this one)."""

    @property
    def module(self) -> str: ...

    @property
    def args(self) -> dict[str, Any]: ...


def _plain(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() and "{{" not in value else None


def containers_of(tasks: Sequence[WrittenTask]) -> list[str]:
    """Container and compose service names the tasks create: ``docker_container``/``podman_container`` names,
    a compose project's name and the services of an inline ``definition`` (templated names are left out)."""
    found: list[str] = []
    for task in tasks:
        if task.module in CONTAINER_MODULES and (name := _plain(task.args.get("name"))):
            found.append(name)
        elif task.module in COMPOSE_MODULES:
            if name := _plain(task.args.get("project_name") or task.args.get("name")):
                found.append(name)
            definition = task.args.get("definition")
            services = definition.get("services") if isinstance(definition, dict) else None
            if isinstance(services, dict):
                found += [str(k) for k in services]
    return found


def containers_in_vars(variables: Any) -> list[str]:
    """Names of containers listed in variables: lists of mappings with a ``name`` and an ``image``
    (``containers: [{name: sonarr, image: ...}]``)."""
    found: list[str] = []
    for value in variables.values() if isinstance(variables, dict) else []:
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict) and "image" in item and (name := _plain(item.get("name"))):
                found.append(name)
    return found


def compose_services(text: str) -> list[str]:
    """The service names of a compose file's text (the keys indented under a top-level ``services:``), read line by
    line without templating."""
    found: list[str] = []
    inside, indent = False, None
    for line in text.splitlines():
        if not inside:
            inside = line.rstrip() == "services:"
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            break
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        key = re.match(r"[ \t]*([A-Za-z0-9][\w.-]*):", line)
        if depth == indent and key:
            found.append(key.group(1))
    return found
