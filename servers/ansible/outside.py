"""What a run reads and runs beyond the playbook's own tasks: pinned by the plan's snapshot, named in its warnings.

- :func:`outside_paths`: files and folders outside the repo the run may read (roles and collections paths and
  plugin folders from ``ansible.cfg`` and ``ANSIBLE_*`` variables; absolute ``vars_files``, includes and
  template sources; the default Galaxy folders, only for the roles and collections the playbook uses that the
  repo lacks). :func:`servers.ansible.snapshot.take` hashes them into the plan's digest.
- :func:`code_notes`: every place code runs during the check (``pipe``/``lines`` lookups, inventory scripts
  and inventory plugins, the repo's plugin folders), one sentence each for the human who approves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from chiffon.servers.ansible import preview
from chiffon.servers.ansible.ansible_cfg import PLUGIN_KEYS
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.plays import Playbook, load_yaml
from chiffon.servers.ansible.units import Unit
from chiffon.shared.redact import redact_text

ROLE_DIRS = ("~/.ansible/roles", "/usr/share/ansible/roles", "/etc/ansible/roles")
COLLECTION_DIRS = ("~/.ansible/collections", "/usr/share/ansible/collections")
ROLES_ENV = ("ANSIBLE_ROLES_PATH",)
COLLECTIONS_ENV = ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS")
# task keywords and module arguments whose value is a file the run reads
FILE_KEYS = frozenset({"vars_files", "include_vars", "include_tasks", "import_tasks", "import_playbook", "src",
                       "file", "dir", "template", "copy"})
ROLE_MODULES = frozenset({"include_role", "import_role", "ansible.builtin.include_role",
                          "ansible.builtin.import_role"})
_FQCN = re.compile(r"^([a-z_]\w*)\.([a-z_]\w*)\.\w+$")
_PIPE = re.compile(r"""(?:lookup|query|q)\(\s*['"](?:ansible\.builtin\.)?(pipe|lines)['"]\s*,\s*(['"][^'"]*['"])?"""
                   r"""|with_(pipe|lines)\s*:\s*(.*)""")
_FREE_FORM_FILE = re.compile(r"\b(?:src|file)=(/\S+)")
MAX_NOTES = 12


def _split(value: str) -> list[Path]:
    return [Path(os.path.expanduser(p)) for chunk in value.split(",") for p in chunk.split(os.pathsep) if p.strip()]


def _outside(root: Path, paths: list[Path]) -> list[Path]:
    top = root.resolve()
    return [p for p in paths if p.is_absolute() and p.exists() and not p.resolve().is_relative_to(top)]


def _strings(data: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(key, string)`` for every string in ``data``, each with the nearest mapping key above it."""
    if isinstance(data, str):
        yield key, data
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _strings(v, str(k).rsplit(".", 1)[-1])
    elif isinstance(data, list):
        for v in data:
            yield from _strings(v, key)


def _run_files(catalog: Catalog, playbook: Playbook, unit: Unit | None) -> list[Path]:
    """The repo's files the run reads as YAML or templates: the playbook and those it imports, the roles and
    task files it applies, and every ``group_vars``/``host_vars`` file."""
    files = [pb.path for pb in (playbook, *catalog.imported(playbook))]
    roles = {a.name for pb in (playbook, *catalog.imported(playbook)) for a in pb.applies if a.kind == "role"}
    tasks = {a.name for pb in (playbook, *catalog.imported(playbook)) for a in pb.applies if a.kind == "tasks"}
    for name in roles:
        role = catalog.roles.get(name)
        if role is not None:
            files += sorted(p for p in (catalog.root / role.path).rglob("*") if p.is_file())
    for name in tasks:
        files += [p for p in (catalog.root / name, playbook.path.parent / name) if p.is_file()]
    if unit is not None and unit.kind == "tasks":
        files.append(catalog.root / unit.source)
    files += [Path(f) for f in catalog.files if {"group_vars", "host_vars"} & set(Path(f).parts)]
    top = catalog.root.resolve()
    return [p for p in dict.fromkeys(files) if p.is_file() and p.resolve().is_relative_to(top)]


def _absolute_refs(paths: list[Path]) -> list[Path]:
    """Absolute, untemplated file paths the YAML files in ``paths`` name under :data:`FILE_KEYS`."""
    found = []
    for path in paths:
        if path.suffix not in (".yml", ".yaml"):
            continue
        for key, value in _strings(load_yaml(path.read_text(errors="replace"))):
            candidates = _FREE_FORM_FILE.findall(value) if "=" in value else [value.strip()]
            if key in FILE_KEYS or _FREE_FORM_FILE.search(value):
                found += [Path(c) for c in candidates if c.startswith("/") and "{{" not in c]
    return found


def _used_roles_and_collections(catalog: Catalog, playbook: Playbook, unit: Unit | None) -> tuple[set[str], set[str]]:
    """Role names the playbook applies that the repo lacks, and ``namespace.collection`` names it uses."""
    books = (playbook, *catalog.imported(playbook))
    roles = {a.name for pb in books for a in pb.applies if a.kind == "role"}
    tasks = [*(t for pb in books for t in pb.tasks), *preview._tasks_of_unit(catalog, playbook, unit)]
    roles |= {str(t.args.get("name")) for t in tasks if t.module in ROLE_MODULES and t.args.get("name")}
    missing = {r for r in roles if r not in catalog.roles}
    collections = {".".join(m.groups()) for name in [*(t.module for t in tasks), *missing]
                   if (m := _FQCN.match(name))}
    collections -= {"ansible.builtin", "ansible.legacy"}
    return {r for r in missing if not _FQCN.match(r)}, collections


def outside_paths(catalog: Catalog, playbook: Playbook, unit: Unit | None = None,
                  environ: Mapping[str, str] | None = None) -> list[Path]:
    """Absolute files and folders outside ``catalog.root`` that a run of ``playbook`` may read, sorted.

    Configured folders (``roles_path``, plugin paths, from ``ansible.cfg`` or ``ANSIBLE_*``) are taken whole;
    collections paths and the default Galaxy folders (:data:`ROLE_DIRS`, :data:`COLLECTION_DIRS`) only for the
    roles and collections the playbook uses and the repo lacks, so a large ``~/.ansible/collections`` costs
    only what is used. Paths that do not exist are left out.
    """
    env = os.environ if environ is None else environ
    cfg, root = catalog.cfg, catalog.root
    found = [*cfg.roles_path, *cfg.plugin_paths]
    found += [p for key in (*ROLES_ENV, *PLUGIN_KEYS.values()) for p in _split(env.get(key, ""))]
    roles, collections = _used_roles_and_collections(catalog, playbook, unit)
    role_bases = [*cfg.roles_path, *(p for k in ROLES_ENV for p in _split(env.get(k, ""))),
                  *(Path(os.path.expanduser(d)) for d in ROLE_DIRS)]
    found += [base / name for base in role_bases for name in roles]
    coll_bases = [*cfg.collections_path, *(p for k in COLLECTIONS_ENV for p in _split(env.get(k, ""))),
                  *(Path(os.path.expanduser(d)) for d in COLLECTION_DIRS)]
    for name in collections:
        namespace, collection = name.split(".")
        found += [base / "ansible_collections" / namespace / collection for base in coll_bases]
    found += _absolute_refs(_run_files(catalog, playbook, unit))
    return sorted(dict.fromkeys(_outside(root, found)))


def code_notes(catalog: Catalog, playbook: Playbook, unit: Unit | None = None) -> list[str]:
    """Where code runs during the check, one sentence each: ``pipe``/``lines`` lookups (with their command),
    the inventory script or inventory plugin, and the repo's plugin folders Ansible loads code from."""
    notes = []
    root = catalog.root
    for path in _run_files(catalog, playbook, unit):
        text = path.read_text(errors="replace")
        if path.suffix in (".yml", ".yaml"):  # the values as Ansible reads them ('' unquoted), and the keys
            text = "\n".join(f"{k}: {v}" for k, v in _strings(load_yaml(text)))
        for match in _PIPE.finditer(text):
            kind = match.group(1) or match.group(3)
            command = (match.group(2) or match.group(4) or "").strip().strip("'\"")
            notes.append(f"runs a command on this machine during the check and the run ({kind} lookup in "
                         f"{path.relative_to(root)}): {redact_text(command)[:160]}")
    notes += _inventory_notes(catalog)
    folders = {Path(f).parent for f in catalog.files if set(Path(f).relative_to(root).parts[:-1]) & set(PLUGIN_KEYS)}
    folders |= {Path(f).parent for f in catalog.files if "/ansible_collections/" in f and "/plugins/" in f}
    folders |= {p for p in catalog.cfg.plugin_paths if p.resolve().is_relative_to(root.resolve()) and p.is_dir()}
    for folder in sorted(folders)[:MAX_NOTES]:
        notes.append(f"loads code from {folder.relative_to(root) if folder.is_relative_to(root) else folder}/ "
                     "(Ansible plugins or modules of the repo): it may run on this machine during the check")
    return list(dict.fromkeys(notes))


def _inventory_notes(catalog: Catalog) -> list[str]:
    if catalog.inventory_choice is None:
        return []
    inventory = catalog.root / catalog.inventory
    files = sorted(p for p in inventory.rglob("*") if p.is_file()) if inventory.is_dir() else [inventory]
    notes = []
    for path in files:
        rel = path.relative_to(catalog.root)
        if path.is_file() and os.access(path, os.X_OK):
            notes.append(f"runs the inventory script {rel} on this machine during the check and the run")
        elif path.suffix in (".yml", ".yaml") and path.is_file():
            data = load_yaml(path.read_text(errors="replace"))
            if isinstance(data, dict) and isinstance(data.get("plugin"), str):
                notes.append(f"runs the inventory plugin {data['plugin']} ({rel}) on this machine during the "
                             "check and the run")
    return notes


def outside_notes(paths: list[Path]) -> list[str]:
    """One warning per path outside the repo the plan pins."""
    return [f"reads {p} from outside the repo: pinned by this plan's snapshot (hashed; if it changes, the run "
            "is refused)" for p in paths]


def scope(catalog: Catalog, playbook: Playbook, unit: Unit | None, vault: Path | None) -> tuple[list[Path], list[str]]:
    """``(paths, notes)`` for a plan: what its snapshot pins beyond the repo's files (:func:`outside_paths` and the
    vault password file ``vault``, wherever it is: a gitignored one in the repo is pinned by its digest too), and
    the warnings naming the code that runs during the check and each path read from outside the repo."""
    paths = outside_paths(catalog, playbook, unit)
    notes = [*preview.vault_note(vault), *code_notes(catalog, playbook, unit), *outside_notes(paths)]
    return [*paths, *([vault] if vault is not None else [])], notes
