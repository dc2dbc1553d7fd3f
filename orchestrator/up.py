"""``chiffon up`` and ``chiffon down``: start and stop this host's part of the suite in dependency order.

Groups, in start order (``down`` goes in reverse):

1. ``store``: PostgreSQL and Redis (the embedded servers in CHIFFON_HOME when their URLs are unset;
   otherwise the configured servers must answer), migrations applied;
2. ``servers``: ``chiffon-hostd`` and the orchestrator over streamable HTTP (``chiffon serve --transport http``),
   each ready when its ``/health`` answers;
3. ``workers``: ``chiffon worker``, ready when it has joined the queue.

Which of them run here comes from ``hosts.<this host>.chiffon``; a host the config does not list runs the
embedded suite (orchestrator and hostd). HTTP always needs a token: without ``http.bearer_token`` the
orchestrator gets the one in ``CHIFFON_HOME/http-token`` (made once, mode 0600; :func:`local_token`), which
local clients send as ``Authorization: Bearer ...``. Processes are detached, with their pid in ``CHIFFON_HOME/run`` and their
output in ``CHIFFON_HOME/logs``; a component already running is left alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import psutil
from pydantic import BaseModel

from chiffon.shared.config import Settings
from chiffon.shared.errors import ConfigError, InvalidInput
from chiffon.shared.runtime import open_runtime, stop_embedded

Group = Literal["store", "servers", "workers"]
GROUPS: tuple[Group, ...] = ("store", "servers", "workers")
BIN = Path(sys.executable).parent
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Component:
    """One process ``chiffon up`` manages."""

    name: str
    group: Group
    argv: list[str]
    health_url: str | None  # ready when it answers 200; None: ready when ``ready_text`` shows in its log
    ready_text: str = ""
    needs_http_token: bool = False  # gets CHIFFON_HTTP__BEARER_TOKEN from local_token() when none is configured


class Started(BaseModel):
    """What ``up`` did with one component, and how long it took to be ready (seconds since ``up`` began)."""

    name: str
    group: Group
    state: Literal["started", "already running", "ready", "failed"]
    ready_after_s: float | None = None
    pid: int | None = None
    detail: str = ""


def _local(address: str) -> str:
    return "127.0.0.1" if address in ("0.0.0.0", "::", "") else address


def components(settings: Settings, config: Path | None = None) -> list[Component]:
    """This host's processes, in start order."""
    wanted = settings.hosts[settings.host].chiffon if settings.host in settings.hosts else ["orchestrator", "hostd"]
    config_args = ["--config", str(config)] if config else []
    out = []
    if "hostd" in wanted:
        out.append(Component("hostd", "servers", [str(BIN / "chiffon-hostd"), "--host", settings.host],
                             f"http://{_local(settings.hostd.bind)}:{settings.hostd.port}/health"))
    if "orchestrator" in wanted:
        out.append(Component("orchestrator", "servers",
                             [str(BIN / "chiffon"), "serve", "--transport", "http", *config_args],
                             f"http://{_local(settings.http.host)}:{settings.http.port}/health",
                             needs_http_token=True))
    if "console" in wanted:
        out.append(Component("console", "servers", [str(BIN / "chiffon"), "console", *config_args],
                             f"http://{_local(settings.console.bind)}:{settings.console.port}/health"))
    if "worker" in wanted:
        out.append(Component("worker", "workers", [str(BIN / "chiffon"), "worker", *config_args], None, ": serving "))
    return out


def token_file(settings: Settings) -> Path:
    """``CHIFFON_HOME/http-token``: the orchestrator's HTTP token when ``http.bearer_token`` is unset."""
    return settings.home / "http-token"


def local_token(settings: Settings) -> str:
    """The token ``chiffon up``'s orchestrator requires over HTTP when ``http.bearer_token`` is unset: read from
    :func:`token_file`, or made there once (256 bits, ``secrets.token_urlsafe(32)``; created mode 0600, so only
    this account reads it). Local clients send it as ``Authorization: Bearer TOKEN``.

    Raises:
        ConfigError: the file exists but is empty or readable by other accounts (fix its mode or delete it).
    """
    import secrets

    path = token_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.name == "posix" and path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} is readable by other accounts; `chmod 600 {path}` or delete it for a new "
                              "one") from None
        token = path.read_text().strip()
        if not token:
            raise ConfigError(f"{path} is empty; delete it and run `chiffon up` again for a new token") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as sink:
        sink.write(token + "\n")
    return token


def pid_file(settings: Settings, name: str) -> Path:
    return settings.home / "run" / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return settings.home / "logs" / f"{name}.log"


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of ``name`` if its pid file names a live chiffon process."""
    path = pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and any("chiffon" in part for part in proc.cmdline()):
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


async def up(settings: Settings, group: str | None = None, config: Path | None = None,
             timeout_s: float = 300.0) -> list[Started]:
    """Start this host's components of ``group`` (all groups when None), a group at a time, and wait until each
    is ready. Returns one entry per component, with the seconds from the start to its readiness.

    Raises:
        InvalidInput: an unknown group (the groups are named).
        ConfigError: this host's ``chiffon`` list is empty.
    """
    if group is not None and group not in GROUPS:
        raise InvalidInput("group", f"{group!r} is not one of {', '.join(GROUPS)}")
    check_host(settings)
    began = time.monotonic()
    results: list[Started] = []
    for current in GROUPS:
        if current != "store" and group not in (None, current):
            continue
        if current == "store":  # every other group needs the store and the bus: always make sure they are up
            results.append(await _store(settings, began))
            if results[-1].state == "failed":
                return results
            continue
        batch = [c for c in components(settings, config) if c.group == current]
        results += await asyncio.gather(*(_start(settings, c, began, timeout_s) for c in batch))
        if any(r.state == "failed" for r in results):
            break
    return results


async def _store(settings: Settings, began: float) -> Started:
    try:
        async with open_runtime(settings):
            pass
    except Exception as exc:  # StoreUnavailable, BusUnavailable, anything the embedded servers raise
        return Started(name="postgresql+redis", group="store", state="failed", detail=str(exc))
    where = "embedded in " + str(settings.home) if settings.database_url is None else "configured servers"
    return Started(name="postgresql+redis", group="store", state="ready",
                   ready_after_s=round(time.monotonic() - began, 2), detail=where)


async def _start(settings: Settings, component: Component, began: float, timeout_s: float) -> Started:
    pid = running_pid(settings, component.name)
    if pid is not None:
        return Started(name=component.name, group=component.group, state="already running", pid=pid,
                       ready_after_s=0.0)
    log = log_file(settings, component.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(settings, component.name).parent.mkdir(parents=True, exist_ok=True)
    env = {"CHIFFON_LOG_FORMAT": "json", "CHIFFON_LOG_LEVEL": "info",  # `chiffon logs` reads these files
           **os.environ, "CHIFFON_HOST": settings.host, "CHIFFON_HOME": str(settings.home)}
    if component.needs_http_token and settings.http.bearer_token is None:
        env["CHIFFON_HTTP__BEARER_TOKEN"] = local_token(settings)
    with log.open("ab") as sink:
        proc = subprocess.Popen(component.argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=env,  # noqa: ASYNC220 (spawning returns at once)
                                start_new_session=True)  # survives `chiffon up` exiting
    pid_file(settings, component.name).write_text(f"{proc.pid}\n")
    deadline = began + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-600:].strip()
                return Started(name=component.name, group=component.group, state="failed", pid=proc.pid,
                               detail=f"exited with {proc.returncode}: {tail}")
            if await _ready(client, component, log):
                return Started(name=component.name, group=component.group, state="started", pid=proc.pid,
                               ready_after_s=round(time.monotonic() - began, 2))
            await asyncio.sleep(0.25)
    return Started(name=component.name, group=component.group, state="failed", pid=proc.pid,
                   detail=f"not ready within {timeout_s:.0f} s; see {log}")


async def _ready(client: httpx.AsyncClient, component: Component, log: Path) -> bool:
    if component.health_url is None:
        return component.ready_text in log.read_text(errors="replace")
    try:
        return (await client.get(component.health_url)).status_code == 200
    except httpx.HTTPError:
        return False


async def down(settings: Settings, group: str | None = None) -> list[str]:
    """Stop this host's components of ``group`` (all when None) in reverse order: SIGTERM, then SIGKILL after
    ``STOP_GRACE_S``; with no group or ``store``, the embedded PostgreSQL and Redis too. Names what stopped.

    Raises:
        InvalidInput: an unknown group.
    """
    if group is not None and group not in GROUPS:
        raise InvalidInput("group", f"{group!r} is not one of {', '.join(GROUPS)}")
    stopped = []
    names = [(c.name, c.group) for c in components(settings)]
    known = {"hostd", "orchestrator", "console", "worker"}  # also stop what a different config once started here
    names += [(n, "servers" if n != "worker" else "workers") for n in sorted(known - {n for n, _ in names})]
    for name, belongs in sorted(names, key=lambda item: -GROUPS.index(item[1])):
        if group not in (None, belongs):
            continue
        pid = running_pid(settings, name)
        if pid is None:
            pid_file(settings, name).unlink(missing_ok=True)
            continue
        await asyncio.to_thread(_terminate, pid)
        pid_file(settings, name).unlink(missing_ok=True)
        stopped.append(name)
    if group in (None, "store"):
        stopped += await stop_embedded(settings)
    return stopped


def _terminate(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(STOP_GRACE_S)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.NoSuchProcess:
        pass


def check_host(settings: Settings) -> None:
    """Raises ConfigError when this host's config asks for nothing ``up`` can start."""
    if settings.host in settings.hosts and not settings.hosts[settings.host].chiffon:
        raise ConfigError(f"hosts.{settings.host}.chiffon is empty: nothing for `chiffon up` to start here")
