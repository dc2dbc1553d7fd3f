"""Finding the files of an IaC repo, fast enough to do on every plan.

The scan walks the repo once, pruning folders that never hold a playbook or a role's
files (:data:`SKIP_DIRS`, dot-folders), keeps only what git does not ignore
(``git ls-files --cached --others --exclude-standard``; a folder that is not a git repo is
walked as it is), and sorts the files into playbook candidates and role folders.

:class:`ScanCache` makes rescans incremental: each folder's listing is kept by the folder's
mtime (adding, removing or renaming an entry changes it; editing a file does not, as with
git's untracked cache), git is asked again only when the set of files changed, and each parsed
file or role is kept with the ``(mtime_ns, size)`` it was read at.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

SKIP_DIRS = frozenset({".git", "group_vars", "host_vars", "molecule", ".github", ".gitlab", "collections",
                       "templates", "files", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".cache",
                       ".terraform", "site-packages", ".serena", "handlers", "library", "filter_plugins",
                       "lookup_plugins", "module_utils", "callback_plugins", "test_plugins"})
T = TypeVar("T")


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
        """:func:`git_files_of`, asked again only when the set of files on disk changed (an edit keeps it)."""
        hit = self._entries.get(f"git:{root}")
        if hit is not None and hit[0] == names:
            return cast(set[str] | None, hit[1])  # the cache holds values of every kind
        tracked = git_files_of(root)
        self._entries[f"git:{root}"] = (names, tracked)
        return tracked

    def get(self, key: str, stamp: Any, build: Callable[[], T]) -> T:
        """The cached value of ``key`` if its stamp is ``stamp``, else ``build()`` (cached)."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return cast(T, hit[1])  # stored by this key's build()
        value = build()
        self.parsed += 1
        self._entries[key] = (stamp, value)
        return value


def git_files_of(root: Path) -> set[str] | None:
    """Absolute paths of the files git does not ignore (tracked or not); None when not in a git work tree."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return {os.path.join(root, name) for name in proc.stdout.decode(errors="replace").split("\0") if name}


def walk(root: Path, listings: dict[str, tuple[int, list[tuple[str, str]]]] | None = None) -> dict[str, tuple[int, int]]:
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


def git_commit(root: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


_ROLE_MARKERS = ("tasks/main.yml", "tasks/main.yaml", "meta/main.yml", "meta/main.yaml")
_ROLE_PARTS = ("tasks", "meta", "defaults", "vars")


@dataclass
class RepoFiles:
    """What one pass over the repo's file list found (absolute paths as strings)."""

    playbook_files: list[str]
    role_dirs: dict[str, str]  # role folder -> role name
    role_files: dict[str, list[str]]  # role folder -> the files parse_role reads


def sort_files(root: Path, files: list[str], roles_path: tuple[Path, ...]) -> RepoFiles:
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
    return RepoFiles(sorted(playbooks), role_dirs, {r: sorted(f) for r, f in role_files.items()})


def _role_name(role: str, bases: set[str], top: str) -> str:
    folder = os.path.dirname(role)
    while folder.startswith(top):
        if folder in bases or os.path.basename(folder) == "roles":
            return os.path.relpath(role, folder).replace(os.sep, "/")
        folder = os.path.dirname(folder)
    return os.path.basename(role)
