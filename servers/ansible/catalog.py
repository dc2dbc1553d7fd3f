"""The catalog of an IaC repo: its playbooks, roles, units and inventories.

Playbooks are found at any depth in ``*.yml``/``*.yaml`` and recognised by content
(:mod:`servers.ansible.plays`). The scan skips what cannot hold a playbook: role
internals, ``group_vars``/``host_vars``, ``molecule/``, ``.github/``, ``collections/``,
``templates/``, ``files/``, virtualenvs, and everything git ignores (``git ls-files
--cached --others --exclude-standard``). A folder that is not a git repo is scanned
read-only, with no commit recorded.

Scans are incremental (:mod:`servers.ansible.scan`): a rescan re-reads only what changed
(``benchmarks/repo_understanding.py`` measures full against incremental).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from chiffon.servers.ansible.ansible_cfg import AnsibleCfg
from chiffon.servers.ansible.commands import Command, command_files, read_commands
from chiffon.servers.ansible.inventories import InventoryChoice, choose_inventory
from chiffon.servers.ansible.layout import Project, find_projects, project_of
from chiffon.servers.ansible.plays import (
    LIMIT_RE,
    Playbook,
    Task,
    load_yaml,
    parse_playbook,
    service_of,
    walk_tasks,
)
from chiffon.servers.ansible.roles import Role, parse_role
from chiffon.servers.ansible.scan import ScanCache, git_commit, sort_files, walk
from chiffon.servers.ansible.units import Unit, build_units
from chiffon.shared.errors import InvalidInput, PlaybookNotFound, RepoError
from chiffon.shared.paths import resolve_in_repo

__all__ = ["Catalog", "Playbook", "Role", "ScanCache", "Task", "Unit", "parse_playbook", "resolve_in_repo",
           "service_of"]



class Catalog:
    """Playbooks, roles, units and inventories of one IaC repo. Build with :meth:`load`."""

    def __init__(self, root: Path, *, playbooks: dict[str, Playbook], roles: dict[str, Role], units: list[Unit],
                 cfg: AnsibleCfg, inventories: list[InventoryChoice], inventory_choice: InventoryChoice | None,
                 inventory_error: str | None, is_git: bool, projects: dict[str, Project] | None = None,
                 project: str = "", files: tuple[str, ...] = (), cache: ScanCache | None = None,
                 stats: dict[str, tuple[int, int]] | None = None) -> None:
        self.root = root
        self._cache = cache if cache is not None else ScanCache()
        self._stats = stats or {}  # (mtime_ns, size) of each file when the repo was scanned
        self.files = files  # absolute paths of the repo's files that git does not ignore
        self.projects = projects or {"": Project("", cfg, tuple(inventories), ())}
        self.project = project  # the Ansible project (folder, repo-relative) whose settings this view uses
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
        return git_commit(self.root) if self.is_git else None

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
        stats = walk(root, cache.listings)
        names = frozenset(stats)
        tracked = cache.git_files(root, names)
        files = [p for p in stats if tracked is None or p in tracked]
        # ansible.cfg is often gitignored beside a committed example: every one on disk counts
        configured = find_projects(root, list(stats), environ=environ)
        roles_path = tuple(p for project in configured.values() for p in project.cfg.roles_path)
        layout = cache.get(f"layout:{root}", (names, roles_path), lambda: sort_files(root, files, roles_path))
        projects = find_projects(root, list(stats), layout.playbook_files, environ)
        cfg = projects[""].cfg
        playbooks: dict[str, Playbook] = {}
        for path in layout.playbook_files:
            pb = cache.get(f"pb:{path}", stats[path], functools.partial(parse_playbook, root, Path(path)))
            if pb is not None:
                playbooks[pb.name] = pb
        roles: dict[str, Role] = {}
        for folder, name in layout.role_dirs.items():
            parts = layout.role_files[folder]
            role = cache.get(f"role:{folder}", (name, tuple(parts), tuple(stats[p] for p in parts)),
                             functools.partial(parse_role, root, Path(folder), name))
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
        inventories = list(projects[""].inventories)
        choice, error = _choose(root, projects[""], inventory)
        return cls(root, playbooks=playbooks, roles=roles, units=units, cfg=cfg, inventories=inventories,
                   inventory_choice=choice, inventory_error=error, is_git=tracked is not None, projects=projects,
                   files=tuple(files), cache=cache, stats=stats)

    def imported(self, playbook: Playbook) -> list[Playbook]:
        """The repo's playbooks that ``playbook`` imports (``import_playbook``), at any depth, each once."""
        known = self._imports.get(playbook.name)
        return known if known is not None else self._walk_imports(playbook)  # a generated playbook is not listed

    @cached_property
    def _imports(self) -> dict[str, list[Playbook]]:
        """Each playbook's imported playbooks (:meth:`imported`), worked out once per catalog."""
        return {pb.name: self._walk_imports(pb) for pb in self.playbooks.values()}

    def _walk_imports(self, playbook: Playbook) -> list[Playbook]:
        found: list[Playbook] = []
        todo = [playbook]
        while todo:
            current = todo.pop()
            here = PurePosixPath(current.name).parent
            for written in current.imports:
                name = (here / written).as_posix() if not written.startswith("/") else written
                name = os.path.normpath(name)
                child = self.playbooks.get(name)
                if child is not None and child is not playbook and child not in found:
                    found.append(child)
                    todo.append(child)
        return found

    def importers(self, playbook: Playbook) -> list[Playbook]:
        """The repo's playbooks that import ``playbook``, directly or through another import."""
        return [pb for pb in self.playbooks.values() if pb is not playbook and playbook in self.imported(pb)]

    def project_for(self, playbook: str) -> Project:
        """The Ansible project a repo-relative ``playbook`` belongs to (:func:`servers.ansible.layout.project_of`)."""
        return project_of(self.projects, playbook)

    def using(self, project: Project, inventory: str | None = None, *, missing: str | None = None) -> Catalog:
        """This catalog seen from ``project``: its ``ansible.cfg``, its inventories, and ``inventory`` (a name,
        a repo-relative path, or None for the project's default) chosen. Playbooks, roles and units are shared.
        ``missing``: the inventory the owner runs with is not here; no inventory is chosen and this is why.

        Raises:
            PathOutsideRepo / InvalidInput: ``inventory`` leaves the repo or names no inventory.
        """
        choice, error = (None, missing) if missing else _choose(self.root, project, inventory)
        return Catalog(self.root, playbooks=self.playbooks, roles=self.roles, units=self.units, cfg=project.cfg,
                       inventories=list(project.inventories), inventory_choice=choice, inventory_error=error,
                       is_git=self.is_git, projects=self.projects, project=project.dir, files=self.files,
                       cache=self._cache, stats=self._stats)

    @cached_property
    def commands(self) -> list[Command]:
        """The repo's own ``ansible-playbook`` invocations (:mod:`servers.ansible.commands`), read again only when
        a task-runner file, script or README changed (or the set of playbooks did)."""
        files = command_files(self.root, list(self.files))
        stamp = (tuple((str(f), self._stats.get(str(f))) for f in files), frozenset(self.playbooks))
        return self._cache.get(f"commands:{self.root}", stamp,
                               lambda: read_commands(self.root, [str(f) for f in files], set(self.playbooks)))

    @property
    def project_dir(self) -> Path:
        """Absolute folder of this view's Ansible project: where ``ansible-playbook`` runs."""
        return self.root / self.project if self.project else self.root

    @property
    def inventory_choice(self) -> InventoryChoice | None:
        """The chosen inventory, or None when there is none (:attr:`inventory_problem` says why)."""
        return self._inventory

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
        """``ansible-inventory --list`` output: groups, hosts and ``_meta.hostvars`` (what
        :meth:`prefetch_inventory` started, when it did).

        Raises:
            RepoError: the inventory cannot be parsed (Ansible's message included).
        """
        reading = self.__dict__.get("_inventory_reading")
        return reading.result() if reading is not None else self._read_inventory()

    def prefetch_inventory(self) -> None:
        """Start :attr:`inventory_data` (``ansible-inventory``: a second Ansible process, 0.5-1 s) in a thread, so
        that it runs beside what the caller does next; its first use waits for it, with the same result or
        error. Nothing when it is read or being read already."""
        if "inventory_data" in self.__dict__ or "_inventory_reading" in self.__dict__:
            return
        import concurrent.futures
        import threading

        reading: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self.__dict__["_inventory_reading"] = reading

        def read() -> None:
            try:
                reading.set_result(self._read_inventory())
            except BaseException as exc:
                reading.set_exception(exc)

        threading.Thread(target=read, name="ansible-inventory", daemon=True).start()

    def wait_inventory(self) -> None:
        """Wait for what :meth:`prefetch_inventory` started (nothing when it started nothing).

        Raises:
            RepoError: the inventory cannot be parsed.
        """
        reading = self.__dict__.get("_inventory_reading")
        if reading is not None:
            reading.result()

    def _read_inventory(self) -> dict[str, Any]:
        binary = Path(sys.executable).with_name("ansible-inventory")
        proc = subprocess.run(
            [str(binary), "-i", str(self.inventory_path), "--list"],
            cwd=self.project_dir, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        )
        if proc.returncode != 0:
            raise RepoError(f"inventory {self.inventory} could not be parsed: {proc.stderr.strip()[-800:]}")
        data: dict[str, Any] = json.loads(proc.stdout)  # ansible-inventory --list: an object
        return data

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
        found: dict[str, Any] = self.inventory_data.get("_meta", {}).get("hostvars", {}).get(host, {})
        return found

    def validate_limit(self, limit: str | None) -> str | None:
        """Check a ``--limit`` pattern: allowed characters, and that it names known hosts or groups of the chosen
        inventory (characters only when no inventory is chosen: the plan is blocked on it anyway).

        Raises:
            InvalidInput: bad characters or an unknown host/group (the known ones are listed).
        """
        if limit is None or limit == "":
            return None
        if not LIMIT_RE.match(limit):
            raise InvalidInput("limit", "may contain only host/group names, ',', ':', '!', '&', '*', '[', ']'")
        if self._inventory is None:
            return limit
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


def _choose(root: Path, project: Project, wanted: str | None) -> tuple[InventoryChoice | None, str | None]:
    """``(choice, problem)`` for ``project``: the inventory ``wanted`` names, else its default; a problem
    (none found, several and none named) instead of an error, so that the answer never waits on it.

    Raises:
        PathOutsideRepo / InvalidInput: ``wanted`` leaves the repo or names no inventory.
    """
    try:
        return choose_inventory(root, list(project.inventories), wanted, project.cfg), None
    except RepoError as exc:
        return None, str(exc)
    except InvalidInput as exc:
        if wanted:
            raise
        return None, str(exc)
