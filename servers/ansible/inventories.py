"""A repo's inventories: where homelab repos keep them, which one a plan uses, and what they name.

Without an inventory in ``ansible.cfg``, chiffon looks where homelab repos keep one: ``inventory/`` (or
``inventory/<env>/``), ``inventories/<env>/`` and ``inventories/<env>.ini|yml|yaml``, ``hosts.yml|yaml|ini``,
``hosts`` and ``inventory`` with no extension (INI or YAML), root files named after an environment
(``production``, ``staging``), and ``inventory-<x>`` / ``hosts-<x>`` files. Examples that must be copied first
(``hosts.example``, ``hosts.yml.bk``) are not inventories; :func:`inventory_examples` names the copy to make.
Inventory files are read statically (:func:`inventory_names`), never through a symlink that leaves the repo.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from chiffon.servers.ansible.ansible_cfg import EXAMPLE_SUFFIXES, AnsibleCfg
from chiffon.shared.errors import InvalidInput, PathOutsideRepo, RepoError

INVENTORY_FILES = ("hosts.yml", "hosts.yaml", "hosts.ini", "hosts", "inventory.yml", "inventory.yaml",
                   "inventory.ini", "inventory")


_NOT_INVENTORY = (".example", ".sample", ".bk", ".bak", ".orig", ".dist", ".j2", ".md")


ENV_NAMES = frozenset({"prod", "production", "live", "staging", "stage", "stg", "preprod", "dev", "development",
                        "devel", "test", "testing", "qa", "lab"})



# Words a request uses for an environment, and the inventory names each may be written as.
ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "prod": ("prod", "production", "live"),
    "staging": ("staging", "stage", "stg", "preprod"),
    "dev": ("dev", "development", "devel"),
    "test": ("test", "testing", "qa"),
    "lab": ("lab", "homelab"),
}


@dataclass(frozen=True)
class InventoryChoice:
    """One inventory a plan can use: ``name`` to pick it (``prod``, ``local``), ``path`` relative to the repo."""

    name: str
    path: str
    source: str = field(default="found", compare=False)

    def as_dict(self) -> dict[str, str]:
        """``{name, path, source}``; source is ``ansible.cfg``, ``config`` or ``found``."""
        return {"name": self.name, "path": self.path, "source": self.source}


def _usable(path: Path) -> bool:
    if path.name.startswith(".") or path.name.lower().endswith(_NOT_INVENTORY):
        return False
    if path.is_dir():
        return any(_usable(child) and not child.is_dir() for child in path.iterdir())
    return path.is_file()


def repo_relative(root: Path, path: Path) -> str | None:
    """``path`` relative to the repo ``root`` (symlinks resolved), or None when it lies outside."""
    resolved = path.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else None


def discover_inventories(root: Path, cfg: AnsibleCfg, base: Path | None = None) -> list[InventoryChoice]:
    """Every inventory of the Ansible project in ``base`` (default: the repo root), the ``ansible.cfg`` one
    first. Names are unique; paths are relative to the repo ``root``.

    A folder under ``inventories/`` is one environment (``inventories/prod/``); a file there is one too
    (``inventories/local.ini`` -> ``local``). A root file ``inventory`` or ``hosts`` without an extension
    counts (INI or YAML: Ansible reads both). Paths outside the repo (an ``ansible.cfg`` pointing at
    ``/etc/ansible/hosts``) are skipped: a plan only runs what the repo holds.
    """
    root = root.resolve()
    top = (base or root).resolve()
    found: list[InventoryChoice] = []

    def add(path: Path, name: str, source: str, nested: bool = False) -> None:
        rel = repo_relative(root, path)
        if rel is None or not _usable(path):
            return
        if any(c.path == rel or c.path.startswith(rel + "/") or (rel.startswith(c.path + "/") and not nested)
               for c in found):
            return  # inventories/prod/ and inventories/prod/hosts.yml are one environment
        taken = {c.name for c in found}
        unique = name if name not in taken else rel
        found.append(InventoryChoice(unique, rel, source))

    for path in cfg.inventory:
        add(path, _name_of(root, path), "ansible.cfg")
    for folder in ("inventory", "inventories"):
        where = top / folder
        if not where.is_dir():
            continue
        envs = [c for c in sorted(where.iterdir()) if c.is_dir() and c.name.lower() in ENV_NAMES and _usable(c)]
        if folder == "inventory" and envs:  # inventory/production/, inventory/staging/: one per environment
            for child in envs:
                add(child, child.name, "found", nested=True)
        if folder == "inventory" or not any(child.is_dir() for child in where.iterdir()) and _has_hosts(where):
            add(where, folder, "found")
        for child in sorted(where.iterdir()):
            if folder == "inventories":
                add(child, child.stem if child.is_file() else child.name, "found")
    for name in INVENTORY_FILES:
        add(top / name, Path(name).stem if name.startswith("inventory") else name.replace(".", "-"), "found")
    for child in sorted(top.iterdir()) if top.is_dir() else []:  # root files named after an environment
        if child.is_file() and child.stem.lower() in ENV_NAMES and child.suffix in ("", ".ini", ".yml", ".yaml") \
                and looks_like_inventory(child, root):
            add(child, child.stem, "found")
    for child in sorted(top.iterdir()) if top.is_dir() else []:  # inventory-ns1, hosts-proxmox, hosts_lab.ini
        if child.is_file() and re.match(r"(?:inventory|hosts)[-_.]\w", child.name.lower()) and \
                child.suffix in ("", ".ini", ".yml", ".yaml", ".txt") and looks_like_inventory(child, root):
            add(child, child.name.split(".")[0], "found")
    return found


MAX_INVENTORY_BYTES = 200_000


_INI_GROUP = re.compile(r"[ \t]*\[([\w.-]+)(?::children|:vars)?\][ \t]*$")


_INI_HOST = re.compile(r"([A-Za-z0-9][\w.-]*)(?:[ \t]|$)")


_YAML_KEY = re.compile(r"([ \t]*)([A-Za-z0-9][\w.-]*):")


def _read_inside(path: Path, root: Path, limit: int) -> str | None:
    """The first ``limit`` characters of ``path`` when it is a regular file that resolves inside the repo
    ``root`` (a committed symlink to ``/proc/self/environ`` or ``~/.ssh`` is never read); None otherwise."""
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
            return None
        with resolved.open(errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def looks_like_inventory(path: Path, root: Path) -> bool:
    """An INI inventory (``[group]`` headers) or a YAML one (``all:`` / ``hosts:`` / ``children:``) inside ``root``."""
    head = _read_inside(path, root, 4000)
    if head is None:
        return False
    lines = head.splitlines()
    return any(_INI_GROUP.match(line) for line in lines) or \
        any(line.lstrip(" \t").startswith(("all:", "hosts:", "children:")) for line in lines)


def inventory_names(path: Path, root: Path) -> set[str]:
    """Host and group names written in an inventory file or folder, read statically and line by line (nothing
    is run; dynamic inventories and templated names are left out; files are read up to
    :data:`MAX_INVENTORY_BYTES`, never through a symlink that leaves the repo). Empty when it cannot be read."""
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()
                                            and "group_vars" not in p.parts and "host_vars" not in p.parts] \
        if path.is_dir() else []
    names: set[str] = set()
    for file in files[:50]:
        text = _read_inside(file, root, MAX_INVENTORY_BYTES)
        if text is None:
            continue
        under: list[int] = []  # indentations of the hosts:/children: keys whose entries are being read
        for line in text.splitlines():
            if group := _INI_GROUP.match(line):
                names.add(group.group(1))
                continue
            key = _YAML_KEY.match(line)
            if key is None:
                if host := _INI_HOST.match(line):
                    names.add(host.group(1))
                continue
            indent, name = len(key.group(1)), key.group(2)
            while under and indent <= under[-1]:
                under.pop()
            if name in ("hosts", "children"):
                under.append(indent)
            elif under and indent > under[-1] or indent == 0:
                names.add(name)
    return {n for n in names if n not in ("all", "vars", "children", "hosts") and len(n) > 1}


def inventory_examples(root: Path, base: Path | None = None) -> list[tuple[str, str]]:
    """Committed examples of an inventory in the project at ``base``: ``(example, what to copy it to)``,
    repo-relative (``("hosts.yml.bk", "hosts.yml")``, ``("inventory/hosts.example", "inventory/hosts")``)."""
    root, top = root.resolve(), (base or root).resolve()
    places = [top, top / "inventory", *sorted(p for p in (top / "inventories").glob("*") if p.is_dir())]
    found = []
    for place in places:
        if not place.is_dir():
            continue
        for child in sorted(place.iterdir()):
            name = child.name.lower()
            suffix = next((s for s in EXAMPLE_SUFFIXES if name.endswith(s)), None)
            stem = child.name[: -len(suffix)] if suffix else ""
            if suffix is None and name.startswith(("example", "sample")) and place != top:
                stem = "hosts" + Path(child.name).suffix  # inventory/example.yml -> inventory/hosts.yml
            base_name = stem.lower().rsplit(".", 1)[0] if "." in stem else stem.lower()
            looks = place != top or base_name in ("hosts", "inventory") or stem in INVENTORY_FILES
            if child.is_file() and stem and looks and base_name not in ("ansible", "group_vars", "vars"):
                found.append((child.relative_to(root).as_posix(), (child.parent / stem).relative_to(root).as_posix()))
    return found


def environment_of(words: list[str] | set[str]) -> str | None:
    """The environment a request names (``prod``, ``staging``, ``dev``, ``test``, ``lab``), or None."""
    for env, spellings in ENVIRONMENTS.items():
        if any(w in spellings for w in words):
            return env
    return None


def inventory_for_environment(choices: list[InventoryChoice], env: str) -> InventoryChoice | None:
    """The inventory whose name or path names ``env`` in any of its spellings (``production`` for prod)."""
    spellings = ENVIRONMENTS.get(env, (env,))
    for choice in choices:
        parts = {p.lower() for p in Path(choice.path).parts} | {choice.name.lower(), Path(choice.path).stem.lower()}
        if parts & set(spellings):
            return choice
    return None


def _name_of(root: Path, path: Path) -> str:
    """``inventories/prod/hosts.yml`` -> ``prod``; ``inventories/local.ini`` -> ``local``; ``hosts`` -> ``hosts``."""
    parts = Path(repo_relative(root, path) or path.name).parts
    if len(parts) >= 2 and parts[0] == "inventories":
        return Path(parts[1]).stem
    return Path(parts[0]).stem if parts else path.stem


def _has_hosts(folder: Path) -> bool:
    return any(child.name.startswith("hosts") for child in folder.iterdir())


def choose_inventory(root: Path, choices: list[InventoryChoice], wanted: str | None,
                     cfg: AnsibleCfg) -> InventoryChoice:
    """The inventory a plan uses: ``wanted`` (a name from ``choices`` or a repo-relative path), else the
    ``ansible.cfg`` one, else the only one found.

    Raises:
        InvalidInput: ``wanted`` is neither a known name nor an inventory path inside the repo (the names
            are listed); or several inventories and none chosen.
        PathOutsideRepo: ``wanted`` is a path that leaves the repo.
        RepoError: the repo has no inventory; the message names where chiffon looked.
    """
    root = root.resolve()
    if wanted:
        for choice in choices:
            if wanted in (choice.name, choice.path):
                return choice
        if "\x00" in wanted or os.path.isabs(wanted):
            raise PathOutsideRepo("inventory", f"{wanted!r} is absolute; give a name or a path inside the repo")
        path = (root / wanted).resolve()
        if not path.is_relative_to(root):
            raise PathOutsideRepo("inventory", f"{wanted!r} resolves outside the IaC repo {root}")
        if path.exists():
            return InventoryChoice(path.stem, path.relative_to(root).as_posix(), "config")
        known = ", ".join(f"{c.name} ({c.path})" for c in choices) or "none found"
        raise InvalidInput("inventory", f"{wanted!r} is not an inventory of {root}; known: {known}")
    from_cfg = [c for c in choices if c.source == "ansible.cfg"]
    if from_cfg:
        return from_cfg[0]
    if len(choices) == 1:
        return choices[0]
    if choices:
        names = ", ".join(f"{c.name} ({c.path})" for c in choices)
        raise InvalidInput("inventory", f"{root} has several inventories and ansible.cfg names none: {names}. "
                                        "Choose one with --inventory NAME (CLI) or the inventory argument (tools).")
    looked = ", ".join(f"{p.relative_to(root)}" for p in cfg.inventory if p.is_relative_to(root))
    where = (f"ansible.cfg's inventory ({looked or 'outside the repo'}), " if cfg.inventory else "") + \
        "inventory/, inventories/<env>/, hosts.yml|yaml|ini, hosts, inventory.yml|ini"
    raise RepoError(f"{root} has no usable inventory (looked at {where}). Create one, copy the example the repo "
                    "ships, or pass --inventory PATH.")
