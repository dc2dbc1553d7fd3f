"""The health protocol every chiffon part reports with.

A check answers ``{"status": "ok" | "healthy" | "degraded" | "failed", "issues": [...],
"service": name, "timestamp": ISO 8601}``: ``ok`` works, ``healthy`` works with
something worth knowing (e.g. an embedded server instead of a configured one),
``degraded`` works partly, ``failed`` does not work.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["ok", "healthy", "degraded", "failed"]


class Health(BaseModel):
    """One part's health."""

    service: str
    status: Status
    issues: list[str] = Field(default_factory=list)
    detail: str = ""
    latency_ms: float | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="Machine-readable facts (breaker state...).")
    timestamp: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


async def probe(service: str, check: Callable[[], Awaitable[tuple[Status, str]]]) -> Health:
    """Run ``check`` (returns ``(status, detail)``); an exception is a ``failed`` status with its message."""
    start = time.perf_counter()
    try:
        status, detail = await check()
        issues = [] if status == "ok" else [detail]
    except Exception as exc:  # a health probe reports every failure, whatever its type
        status, detail, issues = "failed", str(exc), [f"{type(exc).__name__}: {exc}"]
    return Health(service=service, status=status, issues=issues, detail=detail,
                  latency_ms=round((time.perf_counter() - start) * 1000, 1))


_RANK: dict[str, int] = {"ok": 0, "healthy": 1, "degraded": 2, "failed": 3}


async def check_parts(rt: Any, *, service: str = "console", hostd: bool = False) -> dict[str, Any]:
    """The health of a served part from the parts behind it: the store (``SELECT 1``), the bus (``INFO``) and,
    with ``hostd``, chiffon-hostd's own ``/health``. ``rt`` is a :class:`~chiffon.shared.runtime.Runtime`.

    Returns ``{"service", "status", "parts": [Health...], "timestamp"}``: the worst part's status, except that
    hostd down only degrades (plans and runs still work without it).
    """
    import httpx

    async def store() -> tuple[Status, str]:
        await rt.store.pool.fetchval("SELECT 1")
        return "ok", "PostgreSQL answers"

    async def bus() -> tuple[Status, str]:
        return "ok", f"Redis {await rt.bus.server_version()} answers"

    async def daemon() -> tuple[Status, str]:
        url = str(rt.settings.hostd.url).rstrip("/") + "/health"
        async with httpx.AsyncClient(timeout=3) as client:
            reply = await client.get(url)
        return ("ok", f"hostd at {url} answers") if reply.status_code == 200 else \
            ("failed", f"hostd at {url} answered {reply.status_code}")

    parts = [await probe("store", store), await probe("bus", bus)]
    if hostd and rt.settings.hostd.url:  # unset: the engines run in-process, nothing to reach
        heard = await probe("hostd", daemon)
        if heard.status == "failed":
            heard.status = "degraded"
        parts.append(heard)
    worst = max(parts, key=lambda p: _RANK[p.status]).status
    return {"service": service, "status": worst, "parts": [p.model_dump() for p in parts],
            "timestamp": datetime.now(UTC).isoformat()}


WATCH_WINDOW_S = 3 * (1.0 + 1.5) + 1.0  # watch_parts' defaults: a dead part is known within this, seconds


async def watch_parts(rt: Any, *, every_s: float = 1.0, timeout_s: float = 1.5, misses: int = 3) -> None:
    """Probe the store (``SELECT 1``) and the bus (``PING``) every ``every_s``; never returns while both answer.

    Raises:
        StoreUnavailable, BusUnavailable: one failed ``misses`` probes in a row (each bounded by ``timeout_s``),
            so a dead part is known within ``misses * (every_s + timeout_s)`` seconds (7.5 s by default).
    """
    import asyncio

    from chiffon.shared.errors import BusUnavailable, StoreUnavailable

    async def store() -> None:
        await rt.store.pool.fetchval("SELECT 1", timeout=timeout_s)

    async def bus() -> None:
        await rt.bus.server_version()

    failed = {"PostgreSQL": 0, "Redis": 0}
    while True:
        for name, probe in (("PostgreSQL", store), ("Redis", bus)):
            try:
                await asyncio.wait_for(probe(), timeout_s)
                failed[name] = 0
            except Exception as exc:  # any failure of the probe counts: refused, reset, timed out
                failed[name] += 1
                if failed[name] >= misses:
                    error = StoreUnavailable if name == "PostgreSQL" else BusUnavailable
                    raise error(f"{name} stopped answering ({type(exc).__name__}: {exc})") from exc
        await asyncio.sleep(every_s)
