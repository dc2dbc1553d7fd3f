"""Collections a repo's ``requirements.yml`` names, and which of them are not installed here.

Ansible looks for collections in ``ANSIBLE_COLLECTIONS_PATH`` / ``collections_path`` (default
``~/.ansible/collections:/usr/share/ansible/collections``), in a ``collections/`` folder beside the
playbook, and in ``ansible_collections`` on Python's path (the ``ansible`` package's bundled ones);
https://docs.ansible.com/ansible/latest/reference_appendices/config.html#collections-paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.plays import load_yaml

REQUIREMENT_FILES = ("requirements.yml", "requirements.yaml", "collections/requirements.yml",
                     "collections/requirements.yaml", "ansible/requirements.yml", "roles/requirements.yml")


def requirements_file(catalog: Catalog) -> str | None:
    """The repo's requirements file (relative), or None."""
    return next((p for p in REQUIREMENT_FILES if (catalog.root / p).is_file()), None)


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
