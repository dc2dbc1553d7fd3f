"""Where a repo keeps what Ansible reads: ``ansible.cfg``, inventories, role and collection paths.

What ``ansible.cfg`` says is read by :mod:`servers.ansible.ansible_cfg`.

An Ansible project is the repo root or a folder holding an ``ansible.cfg`` (or playbooks beside ``roles/`` or
an inventory): its settings apply to the playbooks below it (:func:`find_projects`, :func:`project_of`).
Its inventories are found by :mod:`servers.ansible.inventories`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chiffon.servers.ansible.ansible_cfg import AnsibleCfg, read_ansible_cfg
from chiffon.servers.ansible.inventories import (
    ENV_NAMES,
    INVENTORY_FILES,
    InventoryChoice,
    discover_inventories,
    inventory_examples,
    repo_relative,
)


@dataclass(frozen=True)
class Project:
    """An Ansible project inside the repo: a folder with ``ansible.cfg`` (or the repo root), whose settings
    apply to the playbooks below it; its owner runs ``cd <dir> && ansible-playbook ...``.

    ``dir`` is repo-relative (``""`` for the root); inventory paths are repo-relative too.
    """

    dir: str
    cfg: AnsibleCfg
    inventories: tuple[InventoryChoice, ...]
    examples: tuple[tuple[str, str], ...]  # (committed example, the inventory to copy it to)

    def expected_inventory(self, root: Path) -> str | None:
        """The inventory the owner runs with, present or not: ``ansible.cfg``'s (even when it is gitignored and
        absent), else the only one found, else the one a committed example is meant to become."""
        for path in self.cfg.inventory:
            rel = repo_relative(root, path)
            if rel is not None:
                return rel
        if len(self.inventories) == 1:
            return self.inventories[0].path
        plain = [c for c in self.inventories if Path(c.path).name in INVENTORY_FILES]
        if len(plain) == 1 and not any(c.name.lower() in ENV_NAMES for c in self.inventories):
            return plain[0].path  # hosts beside hosts-proxmox: the plain one is the default
        if not self.inventories and len({target for _, target in self.examples}) == 1:
            return self.examples[0][1]
        return None


def find_projects(root: Path, files: list[str], playbooks: list[str] = (),  # type: ignore[assignment]
                  environ: dict[str, str] | None = None) -> dict[str, Project]:
    """Every Ansible project of the repo by its folder: the root, each folder holding an ``ansible.cfg``
    (``ansible/``, ``linux/ansible/``), and each folder holding playbooks beside a ``roles/`` folder.
    ``files``, ``playbooks``: absolute paths of the repo's files and of its playbooks."""
    root = root.resolve()
    dirs = {""} | {Path(f).parent.relative_to(root).as_posix() for f in files
                   if Path(f).name == "ansible.cfg" and Path(f).parent != root}
    dirs |= {Path(f).parent.relative_to(root).as_posix() for f in playbooks
             if Path(f).parent != root and ((Path(f).parent / "roles").is_dir()
                                            or any((Path(f).parent / n).exists() for n in INVENTORY_FILES))}
    projects = {}
    for rel in sorted(dirs):
        base = root / rel if rel else root
        env = environ if rel == "" else {k: v for k, v in (environ or os.environ).items() if k != "ANSIBLE_CONFIG"}
        cfg = read_ansible_cfg(base, env)
        projects[rel] = Project(rel, cfg, tuple(discover_inventories(root, cfg, base)),
                                tuple(inventory_examples(root, base)))
    return projects


def project_of(projects: dict[str, Project], playbook: str) -> Project:
    """The project a repo-relative ``playbook`` belongs to: the nearest folder above it with an ``ansible.cfg``
    (or with playbooks beside ``roles/``), else the repo root. A folder with neither ``ansible.cfg`` nor an
    inventory of its own takes the enclosing project's."""
    folder = Path(playbook).parent
    while True:
        key = "" if str(folder) == "." else folder.as_posix()
        project = projects.get(key)
        if project is not None and (key == "" or project.cfg.path is not None or project.inventories):
            return project
        if key == "":
            return projects[""]
        folder = folder.parent
