"""Collections a repo's ``requirements.yml`` names, and which of them are not installed here.

Ansible looks for collections in ``ANSIBLE_COLLECTIONS_PATH`` / ``collections_path`` (default
``~/.ansible/collections:/usr/share/ansible/collections``), in a ``collections/`` folder beside the
playbook, and in ``ansible_collections`` on Python's path (the ``ansible`` package's bundled ones);
https://docs.ansible.com/ansible/latest/reference_appendices/config.html#collections-paths.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.plays import load_yaml

REQUIREMENT_FILES = ("requirements.yml", "requirements.yaml", "collections/requirements.yml",
                     "collections/requirements.yaml", "ansible/requirements.yml", "roles/requirements.yml")


# Namespaces whose collections the `ansible` community package carries (chiffon's `collections` extra):
# https://github.com/ansible-community/ansible-build-data (12/ansible.in), the ones homelab plays use.
COMMUNITY_NAMESPACES = frozenset({"community", "ansible", "containers", "kubernetes", "amazon", "google", "azure",
                                  "grafana", "hetzner", "netbox", "openstack", "vmware", "microsoft", "cisco",
                                  "kubevirt", "theforeman", "vyos", "fortinet", "purestorage", "ngine_io"})
EXTRA = "collections"


def requirements_file(catalog: Catalog) -> str | None:
    """The repo's requirements file (relative; the root's first, then each Ansible project's), or None."""
    places = [""] + [d for d in catalog.projects if d]
    for base in places:
        for name in REQUIREMENT_FILES:
            rel = f"{base}/{name}" if base else name
            if (catalog.root / rel).is_file():
                return rel
    return None


def community_package() -> bool:
    """The ``ansible`` community package (chiffon's ``collections`` extra) is installed beside ansible-core."""
    return importlib.util.find_spec("ansible_collections") is not None


def install_hint(names: list[str], requirements: str | None) -> str:
    """How to install the collections ``names`` (``namespace.name``): the community package through chiffon's
    extra when it carries them, else ``ansible-galaxy`` (which needs Galaxy or a mirror)."""
    galaxy = (f"`ansible-galaxy collection install -r {requirements}`" if requirements else
              f"`ansible-galaxy collection install {' '.join(sorted(set(names)))}`")
    carried = [n for n in names if n.split(".")[0] in COMMUNITY_NAMESPACES]
    if carried and not community_package():
        return (f"install chiffon's `{EXTRA}` extra (the `ansible` community package: "
                f"`uv tool install 'chiffon[{EXTRA}]'`, or `uv sync --extra {EXTRA}` in a checkout), or {galaxy}")
    return galaxy


def required_collections(catalog: Catalog) -> list[str]:
    """``namespace.name`` of every collection the requirements file lists."""
    rel = requirements_file(catalog)
    data = load_yaml((catalog.root / rel).read_text(errors="replace")) if rel else None
    entries = data.get("collections") if isinstance(data, dict) else None
    names = []
    for entry in entries or []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if isinstance(name, str) and name.count(".") == 1 and "/" not in name:
            names.append(name)
    return names


def collection_roots(catalog: Catalog) -> list[Path]:
    """Folders that may hold ``ansible_collections/<namespace>/<name>``."""
    roots = [*catalog.cfg.collections_path]
    for var in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS"):
        roots += [Path(p).expanduser() for p in os.environ.get(var, "").split(os.pathsep) if p]
    roots += [Path("~/.ansible/collections").expanduser(), Path("/usr/share/ansible/collections"),
              catalog.root / "collections", *(Path(p) for p in sys.path if p)]
    return list(dict.fromkeys(roots))


def missing_collections(catalog: Catalog) -> list[str]:
    """The required collections found in none of :func:`collection_roots`."""
    roots = collection_roots(catalog)

    def installed(name: str) -> bool:
        namespace, collection = name.split(".")
        for root in roots:
            base = root if root.name == "ansible_collections" else root / "ansible_collections"
            if (base / namespace / collection).is_dir():
                return True
        return False

    return [name for name in required_collections(catalog) if not installed(name)]


def required_roles(catalog: Catalog) -> list[str]:
    """Galaxy roles the requirements file lists (``roles:`` entries, or a bare list), by name."""
    rel = requirements_file(catalog)
    data = load_yaml((catalog.root / rel).read_text(errors="replace")) if rel else None
    entries = data.get("roles") if isinstance(data, dict) else data if isinstance(data, list) else None
    names = []
    for entry in entries or []:
        name = (entry.get("name") or entry.get("src")) if isinstance(entry, dict) else entry
        if isinstance(name, str) and name:
            names.append(name.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    return names


def role_roots(catalog: Catalog) -> list[Path]:
    """Folders Ansible finds roles in: ``roles_path`` of every project, ``~/.ansible/roles``, ``/etc/ansible/roles``,
    ``/usr/share/ansible/roles`` (https://docs.ansible.com/ansible/latest/reference_appendices/config.html#default-roles-path)."""
    roots = [p for project in catalog.projects.values() for p in project.cfg.roles_path]
    roots += [Path(p).expanduser() for p in os.environ.get("ANSIBLE_ROLES_PATH", "").split(os.pathsep) if p]
    roots += [Path("~/.ansible/roles").expanduser(), Path("/etc/ansible/roles"), Path("/usr/share/ansible/roles")]
    return list(dict.fromkeys(roots))


def dependencies(catalog: Catalog) -> dict[str, Any]:
    """What the repo's requirements file names and whether each is installed here.

    Returns ``{requirements, community_package, items: [{kind, name, installed, where}], missing, fix}``;
    ``fix`` is the command(s) that install what is missing (empty when nothing is).
    """
    roots = collection_roots(catalog)
    items: list[dict[str, Any]] = []
    for name in required_collections(catalog):
        namespace, collection = name.split(".")
        where = next((str(b / namespace / collection) for root in roots
                      for b in [root if root.name == "ansible_collections" else root / "ansible_collections"]
                      if (b / namespace / collection).is_dir()), None)
        items.append({"kind": "collection", "name": name, "installed": where is not None, "where": where})
    for name in required_roles(catalog):
        where = next((str(r / name) for r in role_roots(catalog) if (r / name).is_dir()), None)
        where = where or (catalog.roles[name].path if name in catalog.roles else None)
        items.append({"kind": "role", "name": name, "installed": where is not None, "where": where})
    rel = requirements_file(catalog)
    missing = [i["name"] for i in items if not i["installed"]]
    fix = []
    if any(i["kind"] == "collection" and not i["installed"] for i in items):
        fix.append(install_hint([str(i["name"]) for i in items if i["kind"] == "collection" and not i["installed"]],
                                rel))
    if any(i["kind"] == "role" and not i["installed"] for i in items):
        fix.append(f"`ansible-galaxy role install -r {rel}`")
    return {"requirements": rel, "community_package": community_package(), "items": items, "missing": missing,
            "fix": fix}
