"""Scheduled housekeeping: the daily purge, and when each scheduled job last ran.

Two jobs run on systemd timers (``chiffon deploy systemd``): ``backup`` (``backup.schedule``,
hourly) and ``purge`` (``retention.schedule``, daily). Each records its last run, good or
failed, in ``job_runs`` (migration 014) so ``chiffon doctor`` can say when it last ran and
warn when it is overdue.

:func:`purge` deletes what the retention settings say has aged out:

* chat messages older than ``memory.retention_days`` (90), and sessions left empty;
* ansible-runner folders in ``CHIFFON_HOME/runs`` older than ``retention.run_artifacts_days`` (30),
  never the folder of a run still ``running`` (it is the record a reconcile reads);
* spoken replies (``CHIFFON_HOME/voice/*.wav``) older than ``retention.speech_days`` (7).

Ages are modification times of the folder's newest file; the audit trail and backups are
never touched here (backups age out by ``backup.keep_days`` when a backup runs).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from chiffon.shared.health import Status
from chiffon.shared.store import Store

Job = Literal["backup", "purge"]
DAY_S = 86_400.0
# How old a job's last run may be before doctor calls it overdue: twice its default interval.
OVERDUE_S: dict[str, float] = {"backup": 2 * 3600.0, "purge": 2 * DAY_S}


@dataclass
class Purged:
    """What one purge deleted: counts, and the bytes the files held."""

    chat_messages: int = 0
    run_artifacts: list[str] = field(default_factory=list)
    speech_files: int = 0
    bytes_freed: int = 0
    dry_run: bool = False


async def record_job(store: Store, job: Job, ok: bool, detail: dict[str, Any]) -> None:
    """Record ``job``'s run now (the previous record is replaced)."""
    await store.pool.execute(
        "INSERT INTO job_runs (job, ran_at, ok, detail) VALUES ($1, now(), $2, $3::jsonb) "
        "ON CONFLICT (job) DO UPDATE SET ran_at=now(), ok=EXCLUDED.ok, detail=EXCLUDED.detail",
        job, ok, json.dumps(detail, default=str))


async def last_runs(store: Store) -> dict[str, dict[str, Any]]:
    """``{job: {"ran_at": datetime, "ok": bool, "detail": dict}}`` for every job that ran at least once."""
    rows = await store.pool.fetch("SELECT job, ran_at, ok, detail FROM job_runs")
    return {r["job"]: {"ran_at": r["ran_at"], "ok": r["ok"], "detail": json.loads(r["detail"])} for r in rows}


def _age_s(path: Path, now: float) -> float:
    """Seconds since anything in ``path`` (a file, or a folder's tree) last changed."""
    newest = path.stat().st_mtime
    if path.is_dir():
        for child in path.rglob("*"):
            try:
                newest = max(newest, child.lstat().st_mtime)
            except FileNotFoundError:
                continue
    return now - newest


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


async def purge(store: Store, *, runs_dir: Path, voice_dir: Path, chat_days: int | None,
                run_artifacts_days: int | None, speech_days: int | None, dry_run: bool = False,
                now: datetime | None = None) -> Purged:
    """Delete what has aged out (see the module docstring); with ``dry_run`` count it and delete nothing.

    A ``None`` for a kind of data keeps it all. Returns :class:`Purged`.
    """
    now = now or datetime.now(UTC)
    done = Purged(dry_run=dry_run)
    if chat_days is not None:
        cutoff = now - timedelta(days=chat_days)
        if dry_run:
            done.chat_messages = await store.pool.fetchval("SELECT count(*) FROM chat_messages WHERE at < $1", cutoff)
        else:
            from chiffon.servers.memory.history import purge as purge_history

            done.chat_messages = await purge_history(store, chat_days, now)
    epoch = now.timestamp()
    if run_artifacts_days is not None and runs_dir.is_dir():
        running = {r["id"] for r in await store.pool.fetch("SELECT id FROM runs WHERE status='running'")}
        limit_s = run_artifacts_days * DAY_S
        for folder in sorted(runs_dir.iterdir()):
            if not folder.is_dir() or folder.name in running:
                continue
            if await asyncio.to_thread(_age_s, folder, epoch) <= limit_s:
                continue
            done.bytes_freed += await asyncio.to_thread(_size, folder)
            done.run_artifacts.append(folder.name)
            if not dry_run:
                await asyncio.to_thread(shutil.rmtree, folder, True)
    if speech_days is not None and voice_dir.is_dir():
        limit_s = speech_days * DAY_S
        for wav in voice_dir.glob("*.wav"):
            if epoch - wav.stat().st_mtime > limit_s:
                done.bytes_freed += wav.stat().st_size
                done.speech_files += 1
                if not dry_run:
                    wav.unlink(missing_ok=True)
    return done


def describe(job: str, last: dict[str, Any] | None, now: float | None = None) -> tuple[Status, str]:
    """Doctor's ``(status, detail)`` for a scheduled job's last run: ``ok``, or ``degraded`` when it failed,
    is overdue (older than :data:`OVERDUE_S`) or never ran."""
    timer = f"chiffon-{job}.timer"
    if last is None:
        return "degraded", f"never ran: enable {timer} (`chiffon deploy systemd`) or run `chiffon {job}`"
    age = (now or time.time()) - last["ran_at"].timestamp()
    when = f"last ran {_ago(age)} ago"
    if not last["ok"]:
        return "degraded", f"{when} and failed: {last['detail'].get('error', '?')}"
    if age > OVERDUE_S[job]:
        return "degraded", f"{when}: overdue (is {timer} enabled?)"
    return "ok", f"{when}: " + _summary(job, last["detail"])


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY_S:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY_S:.1f} days"


def _summary(job: str, detail: dict[str, Any]) -> str:
    if job == "backup":
        return f"{detail.get('folder', '?')} in {detail.get('seconds', '?')} s"
    return (f"{detail.get('chat_messages', 0)} message(s), {len(detail.get('run_artifacts', []))} run folder(s), "
            f"{detail.get('speech_files', 0)} speech file(s) deleted")


def as_detail(purged: Purged) -> dict[str, Any]:
    """A :class:`Purged` as the JSON ``job_runs.detail`` and ``chiffon purge --json`` carry."""
    return asdict(purged)
