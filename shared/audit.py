"""The audit trail: a git repository with one commit per decision or result.

Each record is a commit whose message is::

    <subject line>

    chiffon-audit: 1
    kind: plan | approval | rejection | run | denial | escalation
    plan_id: ...             (task_id for agent tasks' records)
    ...                      (YAML; secrets redacted)

and which adds the same YAML as ``records/<plan_id or task_id>/<n>-<kind>.yaml``, so the
trail can be read with ``git log``, grepped in the tree, or queried with
:meth:`AuditLog.query` (``chiffon audit``).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from chiffon.shared.errors import AuditError
from chiffon.shared.redact import redact, scrub

if TYPE_CHECKING:  # GitPython and filelock load with the first record or query, not at import (start-up time)
    import git

log = logging.getLogger(__name__)

MARKER = "chiffon-audit: 1"
_AUTHOR = ("chiffon", "chiffon@localhost")  # git.Actor, built when a record is written


@dataclass(frozen=True)
class AuditEntry:
    """One audit commit: its sha, time, subject and structured body."""

    commit: str
    time: datetime
    subject: str
    body: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{commit, time (ISO 8601), subject, **body}``."""
        return {"commit": self.commit, "time": self.time.isoformat(), "subject": self.subject, **self.body}


def _owner_only(git_dir: Path) -> None:
    """Take group and other bits off what GitPython rewrote in ``git_dir`` (HEAD, index, refs and reflogs):
    gitdb's ``LockedFD`` chmods each such file 0644 whatever the umask (gitdb 4, ``util.py``)."""
    for path in (git_dir / "HEAD", git_dir / "index", *(git_dir / "refs").rglob("*"), *(git_dir / "logs").rglob("*")):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode) and mode & 0o077:
            os.chmod(path, stat.S_IMODE(mode) & 0o700)


class AuditLog:
    """Append-only audit records in a git repository at ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._repo: git.Repo | None = None

    def _open(self) -> git.Repo:
        import git

        if self._repo is None:
            try:
                if (self.path / ".git").is_dir():
                    self._repo = git.Repo(self.path)
                else:
                    self.path.mkdir(parents=True, exist_ok=True)
                    self._repo = git.Repo.init(self.path, initial_branch="main")
            except (git.GitError, OSError) as exc:
                raise AuditError(f"cannot open the audit repository at {self.path}: {exc}") from exc
            # gitdb chmods each new object 0444 whatever the umask: the audit is its owner's alone (0400)
            self._repo.odb.new_objects_mode = 0o400
        return self._repo

    def warm(self) -> None:
        """Load GitPython and open the repository now (about 0.2 s), so that the next :meth:`record` only
        commits: for a caller that waits on something else meanwhile (a check run). Best effort: a failure here
        is left to the record that follows, which raises it. Blocking: run in a thread."""
        try:
            with self._lock:
                self._open()
            from filelock import FileLock  # noqa: F401  (loaded here, used by record)
        except Exception as exc:
            log.debug("audit repository not opened ahead of its record: %s", exc)

    def record(self, kind: str, subject: str, body: dict[str, Any]) -> str:
        """Commit one record; returns the commit sha (40 hex chars). Blocking: run in a thread.

        ``body`` must be JSON-like; secrets are redacted before anything is written.
        Raises:
            AuditError: the repository cannot be written.
        """
        clean = redact({"kind": kind, **body, "recorded_at": datetime.now(UTC).isoformat()})
        text = yaml.safe_dump(clean, sort_keys=False, allow_unicode=True)
        plan_id = str(clean.get("plan_id") or clean.get("task_id") or "misc")
        import git
        from filelock import FileLock

        actor = git.Actor(*_AUTHOR)
        with self._lock, FileLock(str(self.path) + ".lock"):
            repo = self._open()
            folder = self.path / "records" / plan_id
            try:
                folder.mkdir(parents=True, exist_ok=True)
                n = sum(1 for _ in folder.iterdir()) + 1
                record = folder / f"{n:03d}-{kind}.yaml"
                record.write_text(text)
                repo.index.add([str(record.relative_to(self.path))])
                commit = repo.index.commit(
                    f"{scrub(subject)}\n\n{MARKER}\n{text}", author=actor, committer=actor
                )
                _owner_only(Path(repo.git_dir))
            except (git.GitError, OSError) as exc:
                raise AuditError(f"cannot write audit record to {self.path}: {exc}") from exc
        return commit.hexsha

    def exists(self, sha: str) -> bool:
        """True when ``sha`` is a commit of the audit repository."""
        import git

        try:
            repo = self._open()
            return len(sha) == 40 and repo.odb.has_object(bytes.fromhex(sha)) and repo.commit(sha).type == "commit"
        except (ValueError, git.BadName, AuditError):
            return False

    def message(self, sha: str) -> str:
        """The full message of commit ``sha`` (its subject and structured record). Raises AuditError when
        ``sha`` is not a commit of this repository."""
        if not self.exists(sha):
            raise AuditError(f"{sha!r} is not an audit commit")
        message = self._open().commit(sha).message
        return message if isinstance(message, str) else message.decode()

    def query(
        self,
        *,
        since: datetime | None = None,
        kind: str | None = None,
        failed: bool = False,
        service: str | None = None,
        plan_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Records newest first, filtered.

        Args:
            since: only records committed at or after this time (timezone-aware).
            kind: ``plan``, ``approval``, ``rejection``, ``run``; agent tasks add ``denial`` and ``escalation``.
            failed: only runs whose status is ``failed``.
            service: only records about this service (exact, case-insensitive).
            plan_id: only records of this plan.
            limit: at most this many records.
        """
        repo = self._open()
        if not repo.head.is_valid():
            return []
        entries: list[AuditEntry] = []
        for commit in repo.iter_commits("HEAD"):
            when = commit.committed_datetime
            if since and when < since:
                break
            message = commit.message if isinstance(commit.message, str) else commit.message.decode()
            subject, _, rest = message.partition("\n\n")
            if not rest.startswith(MARKER):
                continue
            body = yaml.safe_load(rest[len(MARKER):]) or {}
            if kind and body.get("kind") != kind:
                continue
            if failed and not (body.get("kind") == "run" and body.get("status") == "failed"):
                continue
            if service and str(body.get("service", "")).lower() != service.lower():
                continue
            if plan_id and body.get("plan_id") != plan_id:
                continue
            entries.append(AuditEntry(commit.hexsha, when, subject, body))
            if len(entries) >= limit:
                break
        return entries


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` (ago) or an ISO 8601 date/time -> aware datetime.

    Raises:
        InvalidInput: anything else (the accepted forms are named).
    """
    import re
    from datetime import timedelta

    from chiffon.shared.errors import InvalidInput

    now = now or datetime.now(UTC)
    m = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", value or "")
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return now - timedelta(**{unit: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("since", f"{value!r} is not like 7d, 12h, 30m, 2w or an ISO date (2026-11-01)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
