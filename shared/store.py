"""The PostgreSQL state store: one asyncpg pool, numbered SQL migrations.

With ``CHIFFON_DATABASE_URL`` unset, an embedded PostgreSQL 16 from the
``pgserver`` wheel is started in ``CHIFFON_HOME/postgres`` (about 1 s) and left
running on its unix socket, so the next command reuses it (found from its
``postmaster.pid`` without loading pgserver: :func:`running_embedded_url`);
``chiffon down`` stops it (:func:`stop_embedded`). Migrations are the files
``shared/migrations/NNN_name.sql``, applied in order at open, each in its own
transaction, under an advisory lock so concurrent starters do not race; a
schema that is already current is checked without the lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from chiffon.shared.errors import StoreUnavailable
from chiffon.shared.redact import redact_text

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7_340_021  # arbitrary advisory-lock key owned by chiffon


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read ``NNN_name.sql`` files in version order; a duplicate version is a bug."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = re.fullmatch(r"(\d+)_(\w+)\.sql", path.name)
        if not m:
            raise ValueError(f"migration file {path.name} is not named NNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"two migrations share version {version}")
        found[version] = Migration(version, m.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def _start_embedded(pgdata: Path) -> tuple[Any, str]:
    import pgserver  # imported lazily: only the embedded mode needs it

    pgdata.mkdir(parents=True, exist_ok=True)
    home = pgdata.parent
    mode = home.stat().st_mode & 0o777
    said = _PgserverErrors()  # pg_ctl's own stderr reaches us only through pgserver's log records
    logging.getLogger("pgserver").addHandler(said)
    try:
        with warnings.catch_warnings():  # platformdirs warns on hosts without XDG_RUNTIME_DIR; harmless here
            warnings.simplefilter("ignore")
            server = pgserver.get_server(pgdata, cleanup_mode=None)  # stays up for the next command
    except Exception as exc:  # pgserver raises bare subprocess/OS errors
        raise StoreUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {str(exc).rstrip('.')}. {said.text()}"
            f"{_log_tail(pgdata / 'log')}"
            "Set CHIFFON_DATABASE_URL to use an existing server."
        ) from exc
    finally:
        logging.getLogger("pgserver").removeHandler(said)
    if home.stat().st_mode & 0o777 != mode:  # pgserver, as root, opens every folder above its data dir to all
        os.chmod(home, mode)
    return server, server.get_uri()


class _PgserverErrors(logging.Handler):
    """Keeps the error records pgserver logs while it starts PostgreSQL (a failed pg_ctl's stdout and stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def text(self, limit: int = 600) -> str:
        """pg_ctl's stderr from the failed command pgserver reports (its log comes separately, from the file), on
        one line, at most ``limit`` characters; "" when it reported none."""
        failed = [m for m in self.messages if "stderr:" in m]
        if not failed:
            return ""
        said = " ".join(failed[0].rsplit("stderr:", 1)[1].replace("---", " ").split())
        return f"pg_ctl said: {said[:limit]}. " if said else ""


def _log_tail(log: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of the embedded server's log, as a sentence for an error ("" when unreadable): why
    PostgreSQL refused to start is written there, not in pg_ctl's exit status."""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"Its log ({log}) ends: {' | '.join(line.strip() for line in tail)}. " if tail else ""


def running_embedded_url(pgdata: Path) -> str | None:
    """The connection URL of the embedded PostgreSQL of ``pgdata`` when its postmaster is up and ready, read from
    ``postmaster.pid`` (pid, data dir, start time, port, socket dir, listen address, shared memory key, status);
    None when it is not (no file, a stale file, still starting). Costs a file read and a signal-0 probe: a command
    that finds the server up skips importing pgserver and its interprocess lock (about 0.1 s).

    The URL is the one pgserver itself builds from that file: the unix socket directory, or ``127.0.0.1`` and the
    port where there is no socket (Windows). A connection that then fails means the file lied (a reused pid):
    :meth:`Store.open` falls back to starting the server through pgserver.
    """
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # alive, owned by another account (the ``pgserver`` user when we are root)
    except OSError:
        return None
    socket_dir, port = lines[4].strip(), lines[3].strip()
    if socket_dir:
        return f"postgresql://postgres:@/postgres?host={socket_dir}"
    if port:
        return f"postgresql://postgres:@127.0.0.1:{port}/postgres"
    return None


async def _init_connection(conn: asyncpg.Connection) -> None:
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(pg_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _postmaster_alive(pgdata: Path) -> bool:
    """Whether the pid in ``pgdata``'s postmaster.pid is a live process (in any state: starting, ready, stopping)."""
    try:
        os.kill(int((pgdata / "postmaster.pid").read_text().splitlines()[0]), 0)
    except PermissionError:
        return True  # alive, owned by another account (the ``pgserver`` user when we are root)
    except (OSError, ValueError, IndexError):
        return False
    return True


def stop_embedded(home: Path) -> bool:
    """Stop the embedded PostgreSQL of ``home`` if it runs (``pg_ctl -w stop -m fast``, which waits up to 60 s,
    then ``-m immediate`` if it still runs); True when one was stopped, False when nothing ran (no
    ``postmaster.pid``, or a stale one).

    Raises:
        StoreUnavailable: pg_ctl failed while the postmaster still runs (it did not stop in time).
    """
    pgdata = home / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return False
    import pgserver

    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None  # pgserver runs as it when root
    try:
        pgserver.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]
    except subprocess.CalledProcessError as exc:
        if not _postmaster_alive(pgdata):
            return False  # a stale postmaster.pid: nothing was running
        try:  # still up after a fast shutdown's wait: an immediate one (crash recovery at the next start)
            pgserver.pg_ctl(["-w", "stop", "-m", "immediate"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]
            return True
        except subprocess.CalledProcessError:
            if not _postmaster_alive(pgdata):
                return True
        raise StoreUnavailable(f"the embedded PostgreSQL in {pgdata} did not stop (pg_ctl stop: exit "
                               f"{exc.returncode}); it still runs: try `chiffon down` again") from exc
    return True


CLOSE_TIMEOUT_S = 5.0


class Store:
    """An asyncpg pool over the chiffon schema. Use :meth:`open`, then ``await close()``."""

    def __init__(self, pool: asyncpg.Pool, url: str, embedded: Any = None) -> None:
        self.pool = pool
        self.url = url
        self._embedded = embedded

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for messages."""
        return redact_text(self.url)

    @classmethod
    async def open(cls, url: str | None, home: Path, *, min_size: int = 1, max_size: int = 10) -> Store:
        """Connect (starting the embedded server when ``url`` is None) and migrate.

        Raises:
            StoreUnavailable: the server cannot be reached or refused us; the URL is named.
        """
        embedded = None
        pool = None
        if url is None:
            running = running_embedded_url(home / "postgres")
            if running is not None:  # the server a previous command left up: connect without pgserver
                try:
                    pool = await asyncpg.create_pool(running, min_size=min_size, max_size=max_size, timeout=10,
                                                     init=_init_connection)
                    url = running
                except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                    log.info("the embedded PostgreSQL's postmaster.pid is stale (%s); starting it", exc)
            if pool is None:
                embedded, url = await asyncio.to_thread(_start_embedded, home / "postgres")
        assert url is not None  # given, or the embedded server's
        if pool is None:
            try:
                pool = await asyncpg.create_pool(
                    url, min_size=min_size, max_size=max_size, timeout=10, init=_init_connection
                )
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                raise StoreUnavailable(
                    f"PostgreSQL at {redact_text(url)} is unreachable: {exc or type(exc).__name__}. "
                    "Check CHIFFON_DATABASE_URL, or unset it to use the embedded server."
                ) from exc
        store = cls(pool, url, embedded)
        await store.migrate()
        return store

    async def migrate(self, migrations: list[Migration] | None = None) -> list[int]:
        """Apply pending migrations; returns the versions applied now (``[]`` when the schema is current).

        A current schema costs two small queries and no lock (:meth:`applied_versions`): every command opens the store,
        and most find nothing to apply. Otherwise the migrations run under the advisory lock, each in its own
        transaction, the applied versions read again under the lock (a concurrent starter may have applied some).
        """
        migrations = load_migrations() if migrations is None else migrations
        if {m.version for m in migrations} <= await self.applied_versions():
            return []
        applied_now: list[int] = []
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for mig in migrations:
                    if mig.version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(mig.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", mig.version, mig.name
                        )
                    log.info("applied migration %03d_%s", mig.version, mig.name)
                    applied_now.append(mig.version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        return applied_now

    async def applied_versions(self) -> set[int]:
        """The migration versions recorded in ``schema_migrations``; empty when the table does not exist yet (a new
        database). Two small queries, no lock."""
        async with self.pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return set()
            return {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close the pool, waiting at most ``timeout_s`` for connections in use to be released (asyncpg waits for
        ever otherwise, e.g. on a connection whose server died), then terminate it. The embedded server keeps
        running for the next command."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout_s)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("closing the PostgreSQL pool: %s; terminated it", exc or type(exc).__name__)
            self.pool.terminate()
