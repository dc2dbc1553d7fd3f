"""The collaborators every server shares, opened once per process.

``Runtime`` bundles settings, the PostgreSQL store, the Redis bus and the audit
log; :func:`open_runtime` opens them (embedded servers where no URL is set) and
closes them in reverse order. A command that only reads (``chiffon status``)
opens it with ``bus_on_demand``: Redis (and the import of its client, about
0.2 s) only when something publishes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from chiffon.shared.errors import BusUnavailable

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the clients (git, redis, asyncpg) load when a runtime opens, not when a CLI starts
    from chiffon.shared.audit import AuditLog
    from chiffon.shared.bus import Bus
    from chiffon.shared.config import Settings
    from chiffon.shared.store import Store


@dataclass
class Runtime:
    """Shared collaborators: pass this, not globals, to the servers' logic."""

    settings: Settings
    store: Store
    bus: Bus
    audit: AuditLog


class BusOnDemand:
    """Stands in for a :class:`~chiffon.shared.bus.Bus` that is connected (and the embedded Redis started) on the
    first call of one of its coroutine methods, in a runtime opened with ``bus_on_demand``: a command that reads
    the store and, most of the time, publishes nothing never loads the Redis client. Once connected, every
    attribute is the real bus's.

    Raises (on attribute access before the first connection):
        AttributeError: a plain attribute or method of the bus (``redis``, ``script``): ``await connect()`` first.
    """

    def __init__(self, url: str | None, home: Path) -> None:
        self._url = url
        self._home = home
        self._bus: Bus | None = None
        self._opening: asyncio.Lock | None = None

    @property
    def connected(self) -> bool:
        """Whether the real bus has been opened."""
        return self._bus is not None

    async def connect(self) -> Bus:
        """The real bus, opened on the first call (concurrent first calls open it once).

        Raises:
            BusUnavailable: Redis cannot be reached; the URL is named.
        """
        if self._bus is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._bus is None:
                    from chiffon.shared.bus import Bus

                    self._bus = await Bus.open(self._url, self._home)
        return self._bus

    def __getattr__(self, name: str) -> Any:
        bus = self.__dict__.get("_bus")
        if bus is not None:
            return getattr(bus, name)
        from chiffon.shared.bus import Bus

        member = getattr(Bus, name, None)
        if not inspect.iscoroutinefunction(member):
            raise AttributeError(f"Bus.{name} of a bus opened on demand: `await runtime.bus.connect()` first")

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await getattr(await self.connect(), name)(*args, **kwargs)

        return call

    async def close(self) -> None:
        """Close the real bus if it was opened."""
        if self._bus is not None:
            await self._bus.close()


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


PRIVATE_UMASK = 0o077  # what chiffon creates is its owner's alone: files 0600, folders 0700
_started_with: int | None = None  # the umask the process had before make_private


def playbook_umask() -> int:
    """The umask the process started with (before :func:`make_private` set 077): what ansible-playbook runs
    with, so a local task that creates a file without ``mode:`` gets the modes it would get from a shell."""
    if _started_with is not None:
        return _started_with
    current = os.umask(0)
    os.umask(current)
    return current
STATE_FOLDERS = ("redis", "chroma", "backups", "keys")  # made by their own code; tightened here when they exist


def tighten(folder: Path) -> None:
    """Take the group and other bits off ``folder`` and everything in it that this account owns (a home made
    before the umask; what Ansible itself made in a run folder under the playbook's umask)."""
    for path in (folder, *folder.rglob("*")):
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def make_private(settings: Settings) -> None:
    """Make every file chiffon writes from now on its owner's alone, and create ``CHIFFON_HOME`` and its run,
    snapshot and audit folders 0700.

    Sets the process umask to 077 (:data:`PRIVATE_UMASK`): runs, snapshots, audit, logs, secrets, backups,
    Chroma's files and what ansible-runner writes under ``runs/`` are created 0600 in 0700 folders. The umask is
    process-wide; ansible-playbook itself runs with the umask the process started with (:func:`playbook_umask`),
    so a playbook's files get the modes they get from a shell. The embedded Redis gets the same umask
    (:func:`chiffon.shared.bus.start_embedded`); the embedded PostgreSQL keeps its data 0700/0600 itself.
    State folders of an older home (``redis``, ``chroma``, ``backups``, ``keys``) lose their group/other bits.

    As root, the home is 0711 instead: the embedded PostgreSQL runs as the ``pgserver`` user (pgserver
    drops root), which must traverse the home to reach ``postgres/``; it still cannot list the home or enter
    the 0700 folders. pgserver opens every folder above its data dir to everyone (g+rx, o+rx) when it starts
    as root; :meth:`Store.open <chiffon.shared.store.Store.open>` puts the home's mode back.
    """
    global _started_with
    before = os.umask(PRIVATE_UMASK)
    if _started_with is None:
        _started_with = before
    settings.home.mkdir(parents=True, exist_ok=True)
    as_root = os.name == "posix" and os.geteuid() == 0
    os.chmod(settings.home, 0o711 if as_root else 0o700)
    for folder in (settings.runs_dir, settings.snapshots_dir, settings.audit_dir):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    for name in STATE_FOLDERS:
        if (settings.home / name).is_dir():
            tighten(settings.home / name)


async def _bus_on_demand(url: str | None, home: Path) -> Bus:
    return cast("Bus", BusOnDemand(url, home))


@asynccontextmanager
async def open_runtime(settings: Settings, *, bus_on_demand: bool = False) -> AsyncIterator[Runtime]:
    """Open store, bus and audit log for ``settings``; close them on exit.

    ``bus_on_demand``: the bus is a :class:`BusOnDemand`, connected on its first use (for commands that read: they
    skip Redis and its client's import, about 0.2 s, unless something they do publishes, such as a run
    reconciled by ``chiffon status``).

    Raises:
        StoreUnavailable, BusUnavailable: a service cannot be reached (its URL is named); with ``bus_on_demand``,
            BusUnavailable comes from the first use instead.
    """
    from chiffon.shared.audit import AuditLog
    from chiffon.shared.store import Store

    if bus_on_demand:
        open_bus = _bus_on_demand
    else:
        from chiffon.shared.bus import Bus

        open_bus = Bus.open
    make_private(settings)
    opened = await asyncio.gather(
        Store.open(_secret(settings.database_url), settings.home),
        open_bus(_secret(settings.redis_url), settings.home),
        return_exceptions=True,
    )
    failures = [o for o in opened if isinstance(o, BaseException)]
    if failures:
        for part in opened:
            if not isinstance(part, BaseException):
                await part.close()
        raise failures[0]
    store, bus = cast("tuple[Store, Bus]", tuple(opened))  # no failure: both opened
    if settings.database_url is None or settings.redis_url is None:
        from chiffon.shared.embedded import ensure_watchdog

        ensure_watchdog(settings.home.resolve(), settings.embedded.idle_stop_s)
    from chiffon.shared import error_bus

    reporter = error_bus.attach(bus, threshold=settings.errors.flood_threshold, window_s=settings.errors.flood_window_s)
    try:
        yield Runtime(settings, store, bus, AuditLog(settings.audit_dir))
    finally:
        await error_bus.detach(reporter)
        await bus.close()
        await store.close()


SHUTDOWN_GRACE_S = 10.0


@asynccontextmanager
async def running(worker: Any, name: str, grace_s: float = SHUTDOWN_GRACE_S) -> AsyncIterator[Any]:
    """Run ``worker.run_forever()`` as a background task for the block; on exit cancel it (waiting at most
    ``grace_s``: a worker stuck on a dead connection must not keep the command from exiting), then
    ``await worker.close()`` to let the tasks in hand finish, also when the worker's loop had died (a run in
    hand finishes and writes its outcome whatever happened to the bus). When the block is cancelled (Ctrl-C)
    the tasks in hand are aborted first (``worker.abort()``), so the command stops in seconds."""
    task = asyncio.create_task(worker.run_forever(), name=name)
    try:
        yield worker
    except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: stop what is in hand rather than wait for it
        if hasattr(worker, "abort"):
            worker.abort()
        raise
    finally:
        deadline = asyncio.get_running_loop().time() + grace_s
        while not task.done() and asyncio.get_running_loop().time() < deadline:
            # cancel again until it ends: Python 3.11's wait_for inside the loop can swallow one cancellation
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        if task.done() and not task.cancelled() and task.exception() is not None:
            exc = task.exception()  # it died on its own (its Redis or PostgreSQL went away): what it holds still ends
            log.warning("%s had stopped: %s: %s", name, type(exc).__name__, exc)
        await worker.close()


async def stop_embedded(settings: Settings) -> list[str]:
    """Stop the embedded PostgreSQL and Redis of ``settings.home``; names what was stopped."""
    from chiffon.shared.bus import Bus, embedded_socket
    from chiffon.shared.store import stop_embedded as stop_store

    stopped = []
    if settings.redis_url is None:
        try:
            bus = await Bus.open(None, settings.home) if embedded_socket(settings.home).exists() else None
        except BusUnavailable:
            bus = None
        if bus is not None and await bus.shutdown_embedded():
            stopped.append("redis")
    if settings.database_url is None and await asyncio.to_thread(stop_store, settings.home):
        stopped.append("postgresql")
    return stopped
