"""Playbooks chiffon generates for roles that no playbook applies (and others it writes itself, such as an undo:
:mod:`servers.ansible.undo_plan`), run without touching the checkout.

The generated text is part of the plan: the human approves it as shown, and both the check and the
run execute that exact text from the run's own folder (never from the repo). Ansible finds the
role through ``ANSIBLE_ROLES_PATH`` (every folder of the plan's snapshot that holds roles), and the
snapshot root's ``group_vars``/``host_vars`` are linked beside the staged playbook, so the variables
Ansible would read for a playbook at the repo root are read here too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from chiffon.servers.ansible.catalog import Catalog, Role
from chiffon.servers.ansible.plays import Playbook
from chiffon.servers.ansible.scaffold import role_playbook
from chiffon.servers.ansible.units import Unit
from chiffon.shared.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,100}$")


@dataclass(frozen=True)
class Generated:
    """A generated playbook: its file name, full text, and the role it applies; ``role`` None for one that applies
    no role (an undo), whose plan names ``service`` and carries ``warnings``."""

    name: str
    content: str
    role: Role | None
    service: str = ""
    warnings: tuple[str, ...] = ()

    def unit(self, playbook: Playbook) -> Unit:
        """The plan's unit for ``playbook`` (this text, parsed): the role it applies, or the whole playbook."""
        if self.role is None:
            return Unit(id=f"generated:{self.name}", kind="playbook", service=self.service or playbook.service,
                        playbook=playbook, tags=(), warnings=self.warnings)
        return Unit(id=f"generated:{self.name}", kind="role", service=self.role.short, playbook=playbook,
                    tags=tuple(playbook.tags) or (self.role.short,), role=self.role, role_name=self.role.name,
                    when=self.role.conditions,
                    warnings=(f"generated playbook {self.name}: applies role {self.role.name}, which no playbook of "
                              "the repo applies; it runs from this plan and is not written to the repo",
                              *self.warnings))


def for_role(catalog: Catalog, role_name: str, hosts: str) -> Generated:
    """A playbook applying ``role_name`` (name or short name) to ``hosts`` (one inventory host or group).

    Raises:
        InvalidInput: an unknown role (the roles no playbook applies are listed), or ``hosts`` that is not
            exactly one host or group of the chosen inventory.
    """
    role = catalog.roles.get(role_name) or next((r for r in catalog.roles.values() if r.short == role_name), None)
    if role is None:
        unused = sorted(u.role_name or "" for u in catalog.units if u.kind == "unused-role")
        raise InvalidInput("apply_role", f"{role_name!r} is not a role of {catalog.root}; roles no playbook "
                                         f"applies: {', '.join(unused) or 'none'}")
    if not _NAME.match(hosts or ""):
        raise InvalidInput("apply_to", f"{hosts!r} must be one inventory host or group name")
    groups = catalog.groups()
    known = set(groups) | {h for members in groups.values() for h in members}
    if hosts not in known:
        raise InvalidInput("apply_to", f"{hosts!r} is not a host or group of {catalog.inventory}; known: "
                                    f"{', '.join(sorted(known))}")
    name, content = role_playbook(role, hosts)
    return Generated(name, content, role)


def role_bases(catalog: Catalog, tree: Path) -> list[Path]:
    """Every folder of ``tree`` (the repo's snapshot) that holds roles (``roles/``, ``ansible/roles/``,
    ``roles_path``), for ``ANSIBLE_ROLES_PATH``."""
    bases: list[Path] = []
    for role in catalog.roles.values():
        folder = tree / role.path
        for _ in role.name.split("/"):
            folder = folder.parent
        bases.append(folder)
    root = catalog.root.resolve()
    bases += [tree / p.relative_to(root) for p in catalog.cfg.roles_path if p.is_relative_to(root)]
    return [p for p in dict.fromkeys(bases) if p.is_dir()]


def stage(tree: Path, folder: Path, name: str, content: str) -> Path:
    """Write ``content`` as ``folder/name`` beside links to ``tree``'s root group_vars/host_vars; the path."""
    folder.mkdir(parents=True, exist_ok=True)
    for vars_dir in ("group_vars", "host_vars"):
        source, link = tree / vars_dir, folder / vars_dir
        if source.is_dir() and not link.exists():
            os.symlink(source, link)
    path = folder / name
    path.write_text(content)
    return path
