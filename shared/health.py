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
