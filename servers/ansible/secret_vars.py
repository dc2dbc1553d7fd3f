"""Secret extra vars: the run gets the real value, nothing else keeps it in plain text.

A key is secret when its name says so (:func:`shared.redact.is_secret_key`: ``db_password``,
``api_token``...) or the caller names it (``--secret-var KEY``, ``secret_vars``). The plan row and
the audit keep ``***REDACTED***``; the value waits in ``CHIFFON_HOME/secrets/<plan>.yml`` (folder
0700, file 0600) for the plan's life and is deleted once the plan ran, was rejected or expired.
ansible-runner reads it through the ``-e @file`` the runner writes 0600 and deletes after each
check or run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from chiffon.shared.redact import REDACTED, is_secret_key, redact


def split(extra_vars: dict[str, Any], named: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(shown, secret)``: ``shown`` has every secret value replaced by the redaction marker."""
    named = set(named)
    secret = {k: v for k, v in extra_vars.items() if (k in named or is_secret_key(k)) and v not in (None, "")}
    shown = {k: (REDACTED if k in secret else v) for k, v in redact(extra_vars).items()}
    return shown, secret


def _path(folder: Path, plan_id: str) -> Path:
    return folder / f"{plan_id}.yml"


def keep(folder: Path, plan_id: str, secret: dict[str, Any]) -> None:
    """Store ``secret`` for ``plan_id`` (nothing when empty), readable by this user only."""
    if not secret:
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    fd = os.open(_path(folder, plan_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(secret, fh)


def load(folder: Path, plan_id: str) -> dict[str, Any]:
    """The secret values kept for ``plan_id`` (empty when there are none)."""
    path = _path(folder, plan_id)
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def discard(folder: Path, plan_id: str) -> None:
    """Delete what was kept for ``plan_id``."""
    _path(folder, plan_id).unlink(missing_ok=True)
