"""The collaborators every server shares, opened once per process.

``Runtime`` bundles settings, the PostgreSQL store, the Redis bus and the audit
log; :func:`open_runtime` opens them (embedded servers where no URL is set) and
closes them in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from shared.audit import AuditLog
from shared.bus import Bus
from shared.config import Settings
from shared.store import Store


@dataclass
class Runtime:
    """Shared collaborators: pass this, not globals, to the servers' logic."""

    settings: Settings
    store: Store
    bus: Bus
    audit: AuditLog


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Open store, bus and audit log for ``settings``; close them on exit.

    Raises:
        StoreUnavailable, BusUnavailable: a service cannot be reached (its URL is named).
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    store = await Store.open(_secret(settings.database_url), settings.home)
    try:
        bus = await Bus.open(_secret(settings.redis_url), settings.home)
        try:
            yield Runtime(settings, store, bus, AuditLog(settings.audit_dir))
        finally:
            await bus.close()
    finally:
        await store.close()
