"""Where a repo keeps what Ansible reads: ``ansible.cfg``, inventories, role and collection paths.

Ansible's own precedence (https://docs.ansible.com/ansible/latest/reference_appendices/config.html,
"The configuration file"): ``ANSIBLE_CONFIG`` first, then ``ansible.cfg`` in the current
directory (chiffon runs playbooks from the repo root, so the repo's ``ansible.cfg``). Paths
in it are relative to the file's directory. Keys are case-insensitive (``INVENTORY = hosts``
is seen in real repos).

Without an inventory in ``ansible.cfg``, chiffon looks where homelab repos keep one, in this
order: ``inventory/`` (or ``inventory.yml|yaml|ini``), ``inventories/<env>/`` and
``inventories/<env>.ini|yml|yaml``, ``hosts.yml|yaml|ini`` and ``hosts``. Examples that must be
copied first (``hosts.example``, ``hosts.yml.bk``) are not inventories.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chiffon.shared.errors import InvalidInput, PathOutsideRepo, RepoError

INVENTORY_FILES = ("hosts.yml", "hosts.yaml", "hosts.ini", "hosts", "inventory.yml", "inventory.yaml",
                   "inventory.ini")
INVENTORY_SUFFIXES = (".yml", ".yaml", ".ini", "")
_NOT_INVENTORY = (".example", ".sample", ".bk", ".bak", ".orig", ".dist", ".j2", ".md")


@dataclass(frozen=True)
class AnsibleCfg:
    """What chiffon reads from ``ansible.cfg``: paths are absolute, resolved against the file's folder."""

    path: Path | None = None
    inventory: tuple[Path, ...] = ()
    roles_path: tuple[Path, ...] = ()
    collections_path: tuple[Path, ...] = ()
    vault_password_file: Path | None = None


@dataclass(frozen=True)
class InventoryChoice:
    """One inventory a plan can use: ``name`` to pick it (``prod``, ``local``), ``path`` relative to the repo."""

    name: str
    path: str
    source: str = field(default="found", compare=False)

    def as_dict(self) -> dict[str, str]:
        """``{name, path, source}``; source is ``ansible.cfg``, ``config`` or ``found``."""
        return {"name": self.name, "path": self.path, "source": self.source}


def _paths(value: str, base: Path) -> tuple[Path, ...]:
    parts = [p.strip() for chunk in value.split(",") for p in chunk.split(os.pathsep)]
    return tuple((base / os.path.expanduser(p)).resolve() for p in parts if p)


def read_ansible_cfg(root: Path, environ: dict[str, str] | None = None) -> AnsibleCfg:
    """Read ``ANSIBLE_CONFIG`` or ``<root>/ansible.cfg``; an empty :class:`AnsibleCfg` when there is none.

    Raises:
        RepoError: the file exists but is not valid INI (the parser's message included).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    path = Path(env["ANSIBLE_CONFIG"]).expanduser() if env.get("ANSIBLE_CONFIG") else root / "ansible.cfg"
    if path.is_dir():
        path = path / "ansible.cfg"
    if not path.is_file():
        return AnsibleCfg()
    parser = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_string(path.read_text(errors="replace"), source=str(path))
    except configparser.Error as exc:
        raise RepoError(f"{path} is not a valid ansible.cfg: {exc}") from exc
    base = path.parent.resolve()
    defaults = parser["defaults"] if parser.has_section("defaults") else {}

    def get(*keys: str) -> str:
        return next((str(defaults[k]) for k in keys if defaults.get(k)), "")

    vault = get("vault_password_file")
    return AnsibleCfg(
        path=path.resolve(), inventory=_paths(get("inventory", "hostfile"), base),
        roles_path=_paths(get("roles_path"), base),
        collections_path=_paths(get("collections_path", "collections_paths"), base),
        vault_password_file=(base / os.path.expanduser(vault)).resolve() if vault else None,
    )


def _usable(path: Path) -> bool:
    if path.name.startswith(".") or path.name.lower().endswith(_NOT_INVENTORY):
        return False
    if path.is_dir():
        return any(_usable(child) and not child.is_dir() for child in path.iterdir())
    return path.is_file()


def _relative(root: Path, path: Path) -> str | None:
    resolved = path.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else None


def discover_inventories(root: Path, cfg: AnsibleCfg) -> list[InventoryChoice]:
    """Every inventory of the repo, the ``ansible.cfg`` one first. Names are unique.

    A folder under ``inventories/`` is one environment (``inventories/prod/``); a file there is one too
    (``inventories/local.ini`` -> ``local``). Paths outside the repo (an ``ansible.cfg`` pointing at
    ``/etc/ansible/hosts``) are skipped: a plan only runs what the repo holds.
    """
    root = root.resolve()
    found: list[InventoryChoice] = []

    def add(path: Path, name: str, source: str) -> None:
        rel = _relative(root, path)
        if rel is None or not _usable(path):
            return
        if any(c.path == rel or c.path.startswith(rel + "/") or rel.startswith(c.path + "/") for c in found):
            return  # inventories/prod/ and inventories/prod/hosts.yml are one environment
        taken = {c.name for c in found}
        unique = name if name not in taken else rel
        found.append(InventoryChoice(unique, rel, source))

    for path in cfg.inventory:
        add(path, _name_of(root, path), "ansible.cfg")
    for folder in ("inventory", "inventories"):
        base = root / folder
        if not base.is_dir():
            continue
        if folder == "inventory" or not any(child.is_dir() for child in base.iterdir()) and _has_hosts(base):
            add(base, folder, "found")
        for child in sorted(base.iterdir()):
            if folder == "inventories":
                add(child, child.stem if child.is_file() else child.name, "found")
    for name in INVENTORY_FILES:
        add(root / name, Path(name).stem if name.startswith("inventory") else name.replace(".", "-"), "found")
    return found


def _name_of(root: Path, path: Path) -> str:
    """``inventories/prod/hosts.yml`` -> ``prod``; ``inventories/local.ini`` -> ``local``; ``hosts`` -> ``hosts``."""
    parts = Path(_relative(root, path) or path.name).parts
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
