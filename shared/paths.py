"""Paths a caller names relative to a folder it may touch (an IaC repo, an agent's worktree).

One guard for every tool that takes a path from a model or a user: absolute paths, ``..``
escapes, NUL bytes and symlinks that lead out of the folder are refused before anything is read
or written.
"""

from __future__ import annotations

import os
from pathlib import Path

from chiffon.shared.errors import InvalidInput, PathOutsideRepo


def resolve_in_repo(root: Path, relative: str, field_name: str) -> Path:
    """Resolve ``relative`` inside ``root``, following symlinks; the resolved absolute path.

    Raises:
        InvalidInput: an empty path or one with a NUL byte.
        PathOutsideRepo: absolute paths, ``..`` escapes and symlinks that leave ``root``.
    """
    if not relative or "\x00" in relative:
        raise InvalidInput(field_name, "must be a non-empty path relative to the IaC repo")
    if os.path.isabs(relative):
        raise PathOutsideRepo(field_name, f"{relative!r} is absolute; give a path relative to the IaC repo")
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise PathOutsideRepo(field_name, f"{relative!r} resolves outside the IaC repo {root}")
    return resolved
