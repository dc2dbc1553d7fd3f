"""The PostgreSQL state store: one asyncpg pool, numbered SQL migrations.

With ``CHIFFON_DATABASE_URL`` unset, an embedded PostgreSQL 16 from the
``pgserver`` wheel is started in ``CHIFFON_HOME/postgres`` (about 1 s) and left
running on its unix socket, so the next command reuses it; ``chiffon down``
stops it (:func:`stop_embedded`). Migrations are the files
``shared/migrations/NNN_name.sql``, applied in order at open, each in its own
transaction, under an advisory lock so concurrent starters do not race.
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
    with warnings.catch_warnings():  # platformdirs warns on hosts without XDG_RUNTIME_DIR; harmless here
        warnings.simplefilter("ignore")
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # stays up for the next command
    if home.stat().st_mode & 0o777 != mode:  # pgserver, as root, opens every folder above its data dir to all
        os.chmod(home, mode)
    return server, server.get_uri()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(pg_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def stop_embedded(home: Path) -> bool:
    """Stop the embedded PostgreSQL of ``home`` if it runs; True when one was stopped."""
    pgdata = home / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return False
    import pgserver

    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None  # pgserver runs as it when root
    try:
        pgserver.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]
    except subprocess.CalledProcessError:
        return False  # a stale postmaster.pid: nothing was running
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
        if url is None:
            try:
                embedded, url = await asyncio.to_thread(_start_embedded, home / "postgres")
            except Exception as exc:  # pgserver raises bare subprocess/OS errors
                raise StoreUnavailable(
                    f"could not start the embedded PostgreSQL in {home / 'postgres'}: {exc}. "
                    "Set CHIFFON_DATABASE_URL to use an existing server."
                ) from exc
        assert url is not None  # given, or the embedded server's
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
        """Apply pending migrations; returns the versions applied now."""
        migrations = load_migrations() if migrations is None else migrations
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

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close the pool, waiting at most ``timeout_s`` for connections in use to be released (asyncpg waits for
        ever otherwise, e.g. on a connection whose server died), then terminate it. The embedded server keeps
        running for the next command."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout_s)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("closing the PostgreSQL pool: %s; terminated it", exc or type(exc).__name__)
            self.pool.terminate()
