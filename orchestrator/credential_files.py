"""Credential files inside a git work tree that git would commit (``chiffon doctor``'s ``credential-files``).

A file is reported when its name looks like a credential (:data:`PATTERNS`: ``.env``, ``*.env``,
``vault_pass*``, ``.vault_pass*``, ``*.pem``, ``id_rsa*``, ``*.key``) and git either tracks it (it is in the
history: remove it and rotate the secret) or does not ignore it (one ``git add -A`` commits it). Files that
``.gitignore`` (or ``.git/info/exclude``, or the global excludes file) covers are fine.
"""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PATTERNS = (".env", "*.env", "vault_pass*", ".vault_pass*", "*.pem", "id_rsa*", "*.key")
GIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class ExposedFile:
    """One credential file git would commit: ``path`` relative to the work tree's top (POSIX separators)."""

    tree: Path
    path: str
    tracked: bool

    @property
    def fix(self) -> str:
        """What to do about it, as a sentence."""
        if self.tracked:
            return (f"{self.tree / self.path} is committed in git: `git -C {self.tree} rm --cached {self.path}`, "
                    "add it to .gitignore, and rotate the secret (it stays in the history)")
        return (f"{self.tree / self.path} is not ignored by git: add `{self.path}` to {self.tree / '.gitignore'} "
                "or move it out of the work tree")


def _git(tree: Path, *args: str) -> list[str] | None:
    done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                          check=False)
    return done.stdout.split("\0") if done.returncode == 0 else None


def _looks_like_credential(path: str) -> bool:
    name = PurePosixPath(path).name
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in PATTERNS)


def exposed_credentials(folder: Path) -> list[ExposedFile]:
    """Credential files of the git work tree holding ``folder`` that git tracks or does not ignore.

    ``folder`` may be anywhere inside the work tree (the whole tree is checked); a folder in no git work tree,
    or no ``git`` binary, gives ``[]``. Sorted by path.
    """
    try:
        top = _git(folder, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.TimeoutExpired):
        return []
    if not top or not top[0].strip():
        return []
    tree = Path(top[0].rstrip("\n"))
    tracked = _git(tree, "ls-files", "-z", "--cached") or []
    loose = _git(tree, "ls-files", "-z", "--others", "--exclude-standard") or []
    found = {p: True for p in tracked if p and _looks_like_credential(p)}
    found |= {p: False for p in loose if p and _looks_like_credential(p) and p not in found}
    return [ExposedFile(tree, p, found[p]) for p in sorted(found)]
