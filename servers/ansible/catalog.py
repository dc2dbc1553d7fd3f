"""The catalog of an IaC repo: its playbooks, roles, units and inventories.

Playbooks are found at any depth in ``*.yml``/``*.yaml`` and recognised by content
(:mod:`servers.ansible.plays`). The scan skips what cannot hold a playbook: role
internals, ``group_vars``/``host_vars``, ``molecule/``, ``.github/``, ``collections/``,
``templates/``, ``files/``, virtualenvs, and everything git ignores (``git ls-files
--cached --others --exclude-standard``). A folder that is not a git repo is scanned
read-only, with no commit recorded.

Scans are incremental: :class:`ScanCache` keeps each parsed file (and each role) with
the ``(mtime_ns, size)`` it was read at, so a rescan re-reads only what changed
(``benchmarks/repo_understanding.py`` measures full against incremental).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from servers.ansible.layout import AnsibleCfg, InventoryChoice, choose_inventory, discover_inventories, read_ansible_cfg
from servers.ansible.plays import Playbook, Task, load_yaml, parse_playbook, service_of, walk_tasks
from servers.ansible.roles import Role, parse_role
from servers.ansible.units import Unit, build_units
from shared.errors import InvalidInput, PathOutsideRepo, PlaybookNotFound, RepoError

__all__ = ["Catalog", "Playbook", "Role", "ScanCache", "Task", "Unit", "parse_playbook", "resolve_in_repo",
           "service_of"]

SKIP_DIRS = frozenset({".git", "group_vars", "host_vars", "molecule", ".github", ".gitlab", "collections",
                       "templates", "files", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".cache",
                       ".terraform", "site-packages", ".serena", "handlers", "library", "filter_plugins",
                       "lookup_plugins", "module_utils", "callback_plugins", "test_plugins"})
_LIMIT_RE = re.compile(r"^[A-Za-z0-9_.:,!&*\-\[\] ]{1,200}$")
T = TypeVar("T")


def resolve_in_repo(root: Path, relative: str, field_name: str) -> Path:
    """Resolve ``relative`` inside ``root``, following symlinks.

    Raises:
        PathOutsideRepo: absolute paths, ``..`` escapes and symlinks that leave the repo.
    """
    if not relative or "\x00" in relative:
        raise InvalidInput(field_name, "must be a non-empty path relative to the IaC repo")
    if os.path.isabs(relative):
        raise PathOutsideRepo(field_name, f"{relative!r} is absolute; give a path relative to the IaC repo")
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise PathOutsideRepo(field_name, f"{relative!r} resolves outside the IaC repo {root}")
    return resolved


class ScanCache:
    """Parsed files and roles keyed by path, reused while their ``(mtime_ns, size)`` stamps are unchanged."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, Any]] = {}
        self.listings: dict[str, tuple[int, list[tuple[str, str]]]] = {}  # folder -> (mtime_ns, entries)
        self.parsed = 0  # how many parses the last scans did (tests and the benchmark read it)

    @staticmethod
    def stamp(*paths: Path) -> tuple[tuple[int, int], ...]:
        """``(mtime_ns, size)`` of each path."""
        out = []
        for path in paths:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def git_files(self, root: Path, names: frozenset[str]) -> set[str] | None:
        """:func:`_git_files`, asked again only when the set of files on disk changed (an edit keeps it)."""
        hit = self._entries.get(f"git:{root}")
        if hit is not None and hit[0] == names:
            return hit[1]
        tracked = _git_files(root)
        self._entries[f"git:{root}"] = (names, tracked)
        return tracked

    def get(self, key: str, stamp: Any, build: Callable[[], T]) -> T:
        """The cached value of ``key`` if its stamp is ``stamp``, else ``build()`` (cached)."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = build()
        self.parsed += 1
        self._entries[key] = (stamp, value)
        return value


def _git_files(root: Path) -> set[str] | None:
    """Absolute paths of the files git does not ignore (tracked or not); None when not in a git work tree."""
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return {os.path.join(root, name) for name in proc.stdout.decode(errors="replace").split("\0") if name}


def _walk(root: Path, listings: dict[str, tuple[int, list[tuple[str, str]]]] | None = None) -> dict[str, tuple[int, int]]:
    """``{absolute path: (mtime_ns, size)}`` of the regular files under ``root``, skipped folders pruned.

    A symlink counts only when it resolves to a file inside ``root`` (a link out of the repo is never read).
    ``listings`` caches each folder's entries by the folder's mtime (adding, removing or renaming an entry
    changes it; editing a file does not), as git's untracked cache does, so a rescan lists only folders
    that changed and stats the files.
    """
    top = str(root)
    listings = {} if listings is None else listings
    found: dict[str, tuple[int, int]] = {}
    stack = [top]
    while stack:
        folder = stack.pop()
        mtime = os.stat(folder).st_mtime_ns
        cached = listings.get(folder)
        if cached is None or cached[0] != mtime:
            entries = []
            with os.scandir(folder) as scan:
                for entry in scan:
                    kind = "d" if entry.is_dir(follow_symlinks=False) else "l" if entry.is_symlink() else \
                        "f" if entry.is_file(follow_symlinks=False) else ""
                    if kind:
                        entries.append((entry.name, kind))
            cached = listings[folder] = (mtime, entries)
        for name, kind in cached[1]:
            path = folder + os.sep + name
            if kind == "d":
                if name not in SKIP_DIRS and not name.startswith("."):
                    stack.append(path)
                continue
            if kind == "l":
                target = os.path.realpath(path)
                if not (target.startswith(top + os.sep) and os.path.isfile(target)):
                    continue
            try:
                st = os.stat(path)
            except OSError:  # removed since the listing: the folder's mtime catches it next time
                continue
            found[path] = (st.st_mtime_ns, st.st_size)
    return found


def _git_commit(root: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],  # noqa: S603, S607
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


_ROLE_MARKERS = ("tasks/main.yml", "tasks/main.yaml", "meta/main.yml", "meta/main.yaml")
_ROLE_PARTS = ("tasks", "meta", "defaults", "vars")


@dataclass
class _Layout:
    """What one pass over the repo's file list found (absolute paths as strings)."""

    playbook_files: list[str]
    role_dirs: dict[str, str]  # role folder -> role name
    role_files: dict[str, list[str]]  # role folder -> the files parse_role reads


def _layout(root: Path, files: list[str], roles_path: tuple[Path, ...]) -> _Layout:
    top = str(root)
    bases = {str(p) for p in roles_path}
    role_dirs: dict[str, str] = {}
    for path in files:
        for marker in _ROLE_MARKERS:
            if path.endswith(os.sep + marker):
                role = path[: -len(marker) - 1]
                if role != top and role not in role_dirs:
                    role_dirs[role] = _role_name(role, bases, top)
    playbooks: list[str] = []
    role_files: dict[str, list[str]] = {role: [] for role in role_dirs}
    for path in files:
        parent = os.path.dirname(path)
        grand = os.path.dirname(parent)
        if grand in role_dirs and os.path.basename(parent) in _ROLE_PARTS:
            kind = os.path.basename(parent)
            if path.endswith((".yml", ".yaml")) and (kind == "tasks" or os.path.basename(path).startswith("main.")):
                role_files[grand].append(path)
            continue
        if parent in role_dirs:
            if os.path.basename(path).startswith("README"):
                role_files[parent].append(path)
            continue
        if not path.endswith((".yml", ".yaml")):
            continue
        folder = parent
        while folder.startswith(top + os.sep) and folder not in role_dirs:
            folder = os.path.dirname(folder)
        if folder not in role_dirs:  # role internals (handlers/, molecule/...) are never playbooks
            playbooks.append(path)
    return _Layout(sorted(playbooks), role_dirs, {r: sorted(f) for r, f in role_files.items()})


def _role_name(role: str, bases: set[str], top: str) -> str:
    folder = os.path.dirname(role)
    while folder.startswith(top):
        if folder in bases or os.path.basename(folder) == "roles":
            return os.path.relpath(role, folder).replace(os.sep, "/")
        folder = os.path.dirname(folder)
    return os.path.basename(role)


class Catalog:
    """Playbooks, roles, units and inventories of one IaC repo. Build with :meth:`load`."""

    def __init__(self, root: Path, *, playbooks: dict[str, Playbook], roles: dict[str, Role], units: list[Unit],
                 cfg: AnsibleCfg, inventories: list[InventoryChoice], inventory_choice: InventoryChoice | None,
                 inventory_error: str | None, is_git: bool) -> None:
        self.root = root
        self.playbooks = playbooks
        self.roles = roles
        self.units = units
        self.cfg = cfg
        self.inventories = inventories
        self._inventory = inventory_choice
        self._inventory_error = inventory_error
        self.is_git = is_git

    @cached_property
    def commit(self) -> str | None:
        """Git commit (HEAD) of the repo when it was read; None outside git or before the first commit."""
        return _git_commit(self.root) if self.is_git else None

    @classmethod
    def load(cls, root: Path, inventory: str | None = None, *, cache: ScanCache | None = None,
             environ: dict[str, str] | None = None) -> Catalog:
        """Scan ``root``: playbooks at any depth, roles, units, ``ansible.cfg`` and inventories.

        ``inventory`` is a name from :attr:`inventories` or a repo-relative path; None means the one
        ``ansible.cfg`` names, else the only one found. A repo with no usable inventory still loads
        (listing works); using :attr:`inventory_path` then raises the error naming where chiffon looked.

        Raises:
            RepoError: ``root`` is not a directory, or holds no playbook and no role.
            PathOutsideRepo / InvalidInput: ``inventory`` leaves the repo or names no inventory.
        """
        root = root.expanduser().resolve()
        if not root.is_dir():
            raise RepoError(f"IaC repo {root} is not a directory")
        cache = cache if cache is not None else ScanCache()
        cfg = read_ansible_cfg(root, environ)
        stats = _walk(root, cache.listings)
        names = frozenset(stats)
        tracked = cache.git_files(root, names)
        files = [p for p in stats if tracked is None or p in tracked]
        layout = cache.get(f"layout:{root}", (names, cfg.roles_path), lambda: _layout(root, files, cfg.roles_path))
        playbooks: dict[str, Playbook] = {}
        for path in layout.playbook_files:
            pb = cache.get(f"pb:{path}", stats[path], lambda p=path: parse_playbook(root, Path(p)))
            if pb is not None:
                playbooks[pb.name] = pb
        roles: dict[str, Role] = {}
        for folder, name in layout.role_dirs.items():
            parts = layout.role_files[folder]
            role = cache.get(f"role:{folder}", (name, tuple(parts), tuple(stats[p] for p in parts)),
                             lambda f=folder, n=name: parse_role(root, Path(f), n))
            roles.setdefault(role.name, role)

        def read_tasks(relative: str) -> tuple[Task, ...]:
            path = (root / relative).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                return ()
            return cache.get(f"tasks:{path}", stats.get(str(path)) or ScanCache.stamp(path),
                             lambda: tuple(walk_tasks(load_yaml(path.read_text(errors="replace")))[0]))

        if not playbooks and not roles:
            raise RepoError(f"IaC repo {root} has no playbooks and no roles (looked for plays in every *.yml and "
                            "*.yaml outside roles, group_vars, host_vars, molecule, templates, files and what git "
                            "ignores)")
        units = build_units(playbooks, roles, read_tasks)
        inventories = discover_inventories(root, cfg)
        choice, error = None, None
        try:
            choice = choose_inventory(root, inventories, inventory, cfg)
        except RepoError as exc:
            error = str(exc)
        except InvalidInput as exc:
            if inventory:
                raise
            error = str(exc)
        return cls(root, playbooks=playbooks, roles=roles, units=units, cfg=cfg, inventories=inventories,
                   inventory_choice=choice, inventory_error=error, is_git=tracked is not None)

    @property
    def inventory(self) -> str:
        """The chosen inventory, relative to the repo.

        Raises:
            RepoError / InvalidInput: no usable inventory, or several and none chosen (where chiffon looked).
        """
        if self._inventory is None:
            if self._inventory_error and "several inventories" in self._inventory_error:
                raise InvalidInput("inventory", self._inventory_error.split(": ", 1)[1])
            raise RepoError(self._inventory_error or f"{self.root} has no usable inventory")
        return self._inventory.path

    @property
    def inventory_problem(self) -> str | None:
        """Why no inventory is chosen (none found, or several and none named), or None."""
        return self._inventory_error

    @property
    def inventory_name(self) -> str | None:
        """The chosen inventory's name (``prod``, ``local``), or None when there is none."""
        return self._inventory.name if self._inventory else None

    def unit(self, unit_id: str) -> Unit:
        """The unit with id ``unit_id``. Raises PlaybookNotFound."""
        for unit in self.units:
            if unit.id == unit_id:
                return unit
        raise PlaybookNotFound(f"no unit {unit_id!r} in {self.root}")

    def unit_for(self, playbook: str, tags: list[str] | tuple[str, ...] = ()) -> Unit:
        """The unit a ``playbook`` + ``tags`` choice runs (the playbook as a whole when no unit has those tags)."""
        pb = self.get(playbook)
        tags = tuple(tags)
        for unit in self.units:
            if tags and unit.playbook is pb and unit.tags == tags and unit.kind != "playbook":
                return unit
        return next(u for u in self.units if u.kind == "playbook" and u.playbook is pb)

    def get(self, name: str) -> Playbook:
        """The playbook named ``name`` (``deploy-redis.yml``; the extension may be left out).

        Raises:
            PathOutsideRepo: the name escapes the repo.
            PlaybookNotFound: no such playbook; the message lists the known ones.
        """
        resolve_in_repo(self.root, name, "playbook")
        for candidate in (name, f"{name}.yml", f"{name}.yaml"):
            if candidate in self.playbooks:
                return self.playbooks[candidate]
        raise PlaybookNotFound(f"playbook {name!r} is not in {self.root}; known: {', '.join(sorted(self.playbooks))}")

    @property
    def inventory_path(self) -> Path:
        """Absolute path of the inventory inside the repo."""
        return resolve_in_repo(self.root, self.inventory, "inventory")

    @cached_property
    def inventory_data(self) -> dict[str, Any]:
        """``ansible-inventory --list`` output: groups, hosts and ``_meta.hostvars``.

        Raises:
            RepoError: the inventory cannot be parsed (Ansible's message included).
        """
        binary = Path(sys.executable).with_name("ansible-inventory")
        proc = subprocess.run(  # noqa: S603 - fixed binary, repo-relative inventory
            [str(binary), "-i", str(self.inventory_path), "--list"],
            cwd=self.root, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        )
        if proc.returncode != 0:
            raise RepoError(f"inventory {self.inventory} could not be parsed: {proc.stderr.strip()[-800:]}")
        return json.loads(proc.stdout)

    def groups(self) -> dict[str, list[str]]:
        """Group name -> its hosts (children expanded), ``all`` and ``ungrouped`` included."""
        data = self.inventory_data

        def hosts_of(group: str, seen: frozenset[str] = frozenset()) -> list[str]:
            entry = data.get(group, {})
            found = list(entry.get("hosts", []))
            for child in entry.get("children", []):
                if child not in seen:
                    found.extend(hosts_of(child, seen | {group}))
            return list(dict.fromkeys(found))

        names = [g for g in data if g != "_meta"]
        return {g: hosts_of(g) for g in names}

    def hostvars(self, host: str) -> dict[str, Any]:
        """Variables of ``host`` from the inventory, group_vars and host_vars (untemplated)."""
        return self.inventory_data.get("_meta", {}).get("hostvars", {}).get(host, {})

    def validate_limit(self, limit: str | None) -> str | None:
        """Check a ``--limit`` pattern: allowed characters, and it names known hosts or groups.

        Raises:
            InvalidInput: bad characters or an unknown host/group (the known ones are listed).
        """
        if limit is None or limit == "":
            return None
        if not _LIMIT_RE.match(limit):
            raise InvalidInput("limit", "may contain only host/group names, ',', ':', '!', '&', '*', '[', ']'")
        groups = self.groups()
        known = set(groups) | {h for hosts in groups.values() for h in hosts}
        for part in re.split(r"[,:]", limit):
            name = part.strip().lstrip("!&")
            if name and "*" not in name and "[" not in name and name not in known:
                raise InvalidInput("limit", f"{name!r} is not a host or group of {self.inventory}; known: {', '.join(sorted(known))}")
        return limit

    def hosts_matching(self, pattern: str) -> list[str]:
        """Hosts selected by a simple pattern: names of hosts or groups joined by ``,`` or ``:``."""
        groups = self.groups()
        every = set(groups.get("all", []))
        found: set[str] = set()
        for part in re.split(r"[,:]", pattern):
            name = part.strip()
            found.update(groups.get(name, [name] if name in every else []))
        return sorted(found)
