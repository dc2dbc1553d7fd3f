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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chiffon.shared.errors import InvalidInput, PathOutsideRepo, RepoError

INVENTORY_FILES = ("hosts.yml", "hosts.yaml", "hosts.ini", "hosts", "inventory.yml", "inventory.yaml",
                   "inventory.ini", "inventory")
INVENTORY_SUFFIXES = (".yml", ".yaml", ".ini", "")
_NOT_INVENTORY = (".example", ".sample", ".bk", ".bak", ".orig", ".dist", ".j2", ".md")
MAX_CFG_CHARS = 200_000
_ENV_NAMES = frozenset({"prod", "production", "live", "staging", "stage", "stg", "preprod", "dev", "development",
                        "devel", "test", "testing", "qa", "lab"})
EXAMPLE_SUFFIXES = (".example", ".sample", ".bk", ".bak", ".dist", ".template", ".tmpl")
# Words a request uses for an environment, and the inventory names each may be written as.
ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "prod": ("prod", "production", "live"),
    "staging": ("staging", "stage", "stg", "preprod"),
    "dev": ("dev", "development", "devel"),
    "test": ("test", "testing", "qa"),
    "lab": ("lab", "homelab"),
}


@dataclass(frozen=True)
class AnsibleCfg:
    """What chiffon reads from ``ansible.cfg``: paths are absolute, resolved against the file's folder."""

    path: Path | None = None
    inventory: tuple[Path, ...] = ()
    roles_path: tuple[Path, ...] = ()
    collections_path: tuple[Path, ...] = ()
    vault_password_file: Path | None = None
    vault_identities: tuple[tuple[str, str], ...] = ()  # vault_identity_list: (label, "prompt" or a file path)


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
        rel = _relative(root, path)
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
        envs = [c for c in sorted(where.iterdir()) if c.is_dir() and c.name.lower() in _ENV_NAMES and _usable(c)]
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
        if child.is_file() and child.stem.lower() in _ENV_NAMES and child.suffix in ("", ".ini", ".yml", ".yaml") \
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
            rel = _relative(root, path)
            if rel is not None:
                return rel
        if len(self.inventories) == 1:
            return self.inventories[0].path
        plain = [c for c in self.inventories if Path(c.path).name in INVENTORY_FILES]
        if len(plain) == 1 and not any(c.name.lower() in _ENV_NAMES for c in self.inventories):
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
