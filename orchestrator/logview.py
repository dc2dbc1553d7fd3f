"""``chiffon logs``: the JSON log records of every part, merged in time and filtered by correlation id.

Where records come from (JSON lines, :mod:`chiffon.shared.logs`):

* ``CHIFFON_HOME/logs/*.log``: what ``chiffon up`` started (orchestrator, worker, hostd, console);
* the systemd journal, units ``chiffon-*`` (``journalctl -o cat``), when ``journalctl`` is on the PATH.

Lines that are not JSON records (a text-format log, a traceback's continuation) are skipped. A record
matches when every id asked for (``plan``, ``run``, ``task``, ``request``) equals the record's.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

JOURNAL_UNITS = "chiffon-*"


def parse(line: str) -> dict[str, Any] | None:
    """One JSON log record, or None for anything else."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "ts" in record and "message" in record else None


def matches(record: dict[str, Any], ids: dict[str, str]) -> bool:
    """Whether ``record`` carries every id in ``ids`` (``{"plan": "plan-1"}``)."""
    return all(record.get(key) == value for key, value in ids.items())


def _journal_lines(since: datetime | None, follow: bool) -> subprocess.Popen[str] | None:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        return None
    args = [journalctl, "-o", "cat", "--no-pager", "-q", "-u", JOURNAL_UNITS]
    if since is not None:
        args += ["--since", since.strftime("%Y-%m-%d %H:%M:%S")]
    if follow:
        args += ["-f", "-n", "0"]  # from now on: no backlog
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def records(log_dir: Path, ids: dict[str, str], since: datetime | None = None,
            journal: bool = True) -> list[dict[str, Any]]:
    """Every matching record from the log files and the journal, oldest first."""
    found: list[dict[str, Any]] = []
    for path in sorted(log_dir.glob("*.log")) if log_dir.is_dir() else []:
        with path.open(errors="replace") as lines:
            found.extend(_matching(lines, ids, since))
    proc = _journal_lines(since, follow=False) if journal else None
    if proc is not None:
        assert proc.stdout is not None
        found.extend(_matching(proc.stdout, ids, since))
        proc.wait(timeout=60)
    return sorted(found, key=lambda r: r["ts"])


def _matching(lines: Iterable[str], ids: dict[str, str], since: datetime | None) -> Iterator[dict[str, Any]]:
    cutoff = since.isoformat() if since is not None else None
    for line in lines:
        record = parse(line)
        if record is not None and matches(record, ids) and (cutoff is None or record["ts"] >= cutoff):
            yield record


def follow(log_dir: Path, ids: dict[str, str], journal: bool = True, poll_s: float = 0.5) -> Iterator[dict[str, Any]]:
    """Matching records as they are written, from now on, until the caller stops (Ctrl-C)."""
    offsets = {p: p.stat().st_size for p in log_dir.glob("*.log")} if log_dir.is_dir() else {}
    arrived: queue.Queue[dict[str, Any]] = queue.Queue()
    proc = _journal_lines(None, follow=True) if journal else None
    if proc is not None:
        def pump() -> None:
            assert proc.stdout is not None
            for got in _matching(proc.stdout, ids, None):
                arrived.put(got)
        threading.Thread(target=pump, daemon=True, name="chiffon-logs-journal").start()
    try:
        while True:
            for path in sorted(log_dir.glob("*.log")) if log_dir.is_dir() else []:
                start = offsets.get(path, 0)
                size = path.stat().st_size
                if size < start:  # rotated or truncated
                    start = 0
                if size > start:
                    with path.open(errors="replace") as f:
                        f.seek(start)
                        yield from _matching(f.readlines(), ids, None)
                        offsets[path] = f.tell()
            while not arrived.empty():
                yield arrived.get_nowait()
            time.sleep(poll_s)
    finally:
        if proc is not None:
            proc.terminate()


def render(record: dict[str, Any]) -> str:
    """One line for a terminal: time, part, level, logger, message, and the ids it carries."""
    ids = " ".join(f"{k}={record[k]}" for k in ("plan", "run", "task", "request") if k in record)
    return (f"{record['ts']} {record.get('part', '?'):<12} {record.get('level', '?'):<7} "
            f"{record.get('logger', '?')}: {record['message']}" + (f"  [{ids}]" if ids else ""))
