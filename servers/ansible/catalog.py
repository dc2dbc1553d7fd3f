"""The playbook catalog of an IaC repo: what each playbook is, does and touches.

A playbook is a ``*.yml``/``*.yaml`` file at the repo root or under
``playbooks/`` whose YAML is a list of plays (mappings with ``hosts`` or
``import_playbook``). Its description is the first comment line of the file,
its service the file stem without a leading verb (``deploy-uptime-kuma`` ->
``uptime-kuma``). Parsing is static: nothing is templated or executed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import git
import yaml

from shared.errors import InvalidInput, PathOutsideRepo, PlaybookNotFound, RepoError

PLAYBOOK_DIRS = (".", "playbooks")
VERBS = ("deploy", "install", "setup", "configure", "update", "upgrade", "backup", "cleanup", "remove", "restart")
TASK_KEYWORDS = {
    "name", "when", "loop", "loop_control", "register", "tags", "become", "become_user", "vars",
    "notify", "changed_when", "failed_when", "check_mode", "diff", "ignore_errors", "delegate_to",
    "run_once", "args", "environment", "no_log", "until", "retries", "delay", "with_items",
    "block", "rescue", "always", "listen", "throttle", "timeout", "any_errors_fatal", "module_defaults",
}
_LIMIT_RE = re.compile(r"^[A-Za-z0-9_.:,!&*\-\[\] ]{1,200}$")


class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's ``!unsafe`` / ``!vault`` tags as plain values."""


_TolerantLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
)


@dataclass(frozen=True)
class Task:
    """One task as written: its name, module and module arguments (untemplated)."""

    name: str
    module: str
    args: dict[str, Any] = field(default_factory=dict)
    keywords: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Playbook:
    """One playbook of the catalog. ``name`` is its path relative to the repo root."""

    name: str
    path: Path
    description: str
    service: str
    tags: tuple[str, ...]
    host_patterns: tuple[str, ...]
    play_names: tuple[str, ...]
    tasks: tuple[Task, ...]
    variables: tuple[str, ...]

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: name, description, service, tags, hosts, task count."""
        return {
            "name": self.name,
            "description": self.description,
            "service": self.service,
            "tags": list(self.tags),
            "hosts": list(self.host_patterns),
            "tasks": len(self.tasks),
        }


def _first_comment(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("", "---"):
            continue
        return stripped.lstrip("#").strip() if stripped.startswith("#") else ""
    return ""


def service_of(stem: str) -> str:
    """``deploy-uptime-kuma`` -> ``uptime-kuma``; a stem with no leading verb is returned as is."""
    for verb in VERBS:
        if stem.startswith(verb + "-") or stem.startswith(verb + "_"):
            return stem[len(verb) + 1 :]
    return stem


def _tasks_of(items: list[Any] | None) -> list[Task]:
    tasks: list[Task] = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        for nested in ("block", "rescue", "always"):
            if nested in item:
                tasks.extend(_tasks_of(item[nested]))
        module = next((k for k in item if k not in TASK_KEYWORDS), "")
        if not module or module in ("block", "rescue", "always"):
            continue
        args = item[module] if isinstance(item[module], dict) else {"_raw": item[module]}
        tasks.append(Task(str(item.get("name", "")), module, args, frozenset(item)))
    return tasks


def parse_playbook(root: Path, path: Path) -> Playbook | None:
    """Parse one file; None when it is not a playbook (vars file, compose file...)."""
    text = path.read_text(errors="replace")
    try:
        data = yaml.load(text, Loader=_TolerantLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return None
    if not isinstance(data, list) or not data:
        return None
    if not all(isinstance(p, dict) and ("hosts" in p or "import_playbook" in p) for p in data):
        return None
    tags: list[str] = []
    hosts: list[str] = []
    names: list[str] = []
    tasks: list[Task] = []
    variables: list[str] = []
    for play in data:
        play_tags = play.get("tags") or []
        tags.extend([play_tags] if isinstance(play_tags, str) else play_tags)
        if "hosts" in play:
            hosts.append(str(play["hosts"]))
        if play.get("name"):
            names.append(str(play["name"]))
        if isinstance(play.get("vars"), dict):
            variables.extend(play["vars"])
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            tasks.extend(_tasks_of(play.get(section)))
    name = path.relative_to(root).as_posix()
    return Playbook(
        name=name,
        path=path,
        description=_first_comment(text),
        service=service_of(path.stem),
        tags=tuple(dict.fromkeys(tags)),
        host_patterns=tuple(dict.fromkeys(hosts)),
        play_names=tuple(names),
        tasks=tuple(tasks),
        variables=tuple(variables),
    )


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


class Catalog:
    """The playbooks and inventory of one IaC repo. Build with :meth:`load`."""

    def __init__(self, root: Path, inventory: str, playbooks: dict[str, Playbook], commit: str | None) -> None:
        self.root = root
        self.inventory = inventory
        self.playbooks = playbooks
        self.commit = commit

    @classmethod
    def load(cls, root: Path, inventory: str) -> Catalog:
        """Scan ``root`` for playbooks.

        Raises:
            RepoError: ``root`` is not a directory inside a git repository, or has no playbooks.
            PathOutsideRepo: ``inventory`` leaves the repo.
        """
        root = root.expanduser().resolve()
        if not root.is_dir():
            raise RepoError(f"IaC repo {root} is not a directory")
        try:
            head = git.Repo(root, search_parent_directories=True).head
            commit = head.commit.hexsha if head.is_valid() else None
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise RepoError(
                f"IaC repo {root} is not a git repository; chiffon records which commit of the "
                "playbooks it ran. Run `git init && git add -A && git commit` there first."
            ) from exc
        resolve_in_repo(root, inventory, "inventory")
        playbooks: dict[str, Playbook] = {}
        for folder in PLAYBOOK_DIRS:
            directory = root / folder
            if not directory.is_dir():
                continue
            for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
                if path.resolve().is_relative_to(root) and (pb := parse_playbook(root, path)):
                    playbooks[pb.name] = pb
        if not playbooks:
            raise RepoError(f"IaC repo {root} has no playbooks (looked for plays in *.yml at the root and in playbooks/)")
        return cls(root, inventory, playbooks, commit)

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
