"""Where a repo keeps what Ansible reads: ``ansible.cfg``, inventories, role and collection paths.

Ansible's own precedence (https://docs.ansible.com/ansible/latest/reference_appendices/config.html,
"The configuration file"): ``ANSIBLE_CONFIG`` first, then ``ansible.cfg`` in the current
directory (chiffon runs playbooks from the repo root, so the repo's ``ansible.cfg``). Paths
in it are relative to the file's directory. Keys are case-insensitive (``INVENTORY = hosts``
is seen in real repos).

An Ansible project is the repo root or a folder holding an ``ansible.cfg`` (or playbooks beside ``roles/`` or
an inventory): its settings apply to the playbooks below it (:func:`find_projects`, :func:`project_of`).
Its inventories are found by :mod:`servers.ansible.inventories`.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chiffon.servers.ansible.inventories import (
    ENV_NAMES,
    EXAMPLE_SUFFIXES,
    INVENTORY_FILES,
    InventoryChoice,
    discover_inventories,
    inventory_examples,
    repo_relative,
)
from chiffon.shared.errors import RepoError

MAX_CFG_CHARS = 200_000
# ansible.cfg keys (and their ANSIBLE_* variables) naming folders Ansible loads code from
PLUGIN_KEYS = {"library": "ANSIBLE_LIBRARY", "module_utils": "ANSIBLE_MODULE_UTILS",
               **{f"{kind}_plugins": f"ANSIBLE_{kind.upper()}_PLUGINS" for kind in (
                   "action", "become", "cache", "callback", "cliconf", "connection", "doc_fragment", "filter",
                   "httpapi", "inventory", "lookup", "netconf", "strategy", "terminal", "test", "vars")}}


@dataclass(frozen=True)
class AnsibleCfg:
    """What chiffon reads from ``ansible.cfg``: paths are absolute, resolved against the file's folder."""

    path: Path | None = None
    inventory: tuple[Path, ...] = ()
    roles_path: tuple[Path, ...] = ()
    collections_path: tuple[Path, ...] = ()
    vault_password_file: Path | None = None
    vault_identities: tuple[tuple[str, str], ...] = ()  # vault_identity_list: (label, "prompt" or a file path)
    plugin_paths: tuple[Path, ...] = ()  # library, module_utils, *_plugins folders (:data:`PLUGIN_KEYS`)


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
    if not path.is_file() and not env.get("ANSIBLE_CONFIG"):
        # ansible.cfg gitignored beside a committed example: the example says what the owner's one names
        path = next((root / f"ansible.cfg{s}" for s in EXAMPLE_SUFFIXES if (root / f"ansible.cfg{s}").is_file()), path)
    if not path.is_file():
        return AnsibleCfg()
    if not env.get("ANSIBLE_CONFIG") and not path.resolve().is_relative_to(root.resolve()):
        return AnsibleCfg()  # a committed symlink out of the repo (/proc/self/environ, ~/.ssh/...) is never read
    parser = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_string(path.read_text(errors="replace")[:MAX_CFG_CHARS], source=str(path))
    except configparser.Error as exc:  # its message quotes the file's lines: name the line, never its text
        line = getattr(exc, "lineno", None) or next((n for n, _ in getattr(exc, "errors", [])), None)
        raise RepoError(f"{path} is not a valid ansible.cfg ({type(exc).__name__}"
                        + (f" at line {line}" if line else "") + ")") from None
    base = path.parent.resolve()
    defaults = parser["defaults"] if parser.has_section("defaults") else {}

    def get(*keys: str) -> str:
        return next((str(defaults[k]) for k in keys if defaults.get(k)), "")

    vault = get("vault_password_file")
    identities = []
    for entry in get("vault_identity_list").split(","):
        label, _, source = entry.strip().partition("@")
        if label and source:
            identities.append((label, source if source == "prompt" else
                               str((base / os.path.expanduser(source)).resolve())))
    return AnsibleCfg(
        path=path.resolve(), inventory=_paths(get("inventory", "hostfile"), base),
        roles_path=_paths(get("roles_path"), base),
        collections_path=_paths(get("collections_path", "collections_paths"), base),
        vault_password_file=(base / os.path.expanduser(vault)).resolve() if vault else None,
        vault_identities=tuple(identities),
        plugin_paths=tuple(p for key in PLUGIN_KEYS for p in _paths(get(key), base)),
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
