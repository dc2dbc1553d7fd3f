"""The LLM cost ledger in PostgreSQL, written off the request path.

:meth:`Ledger.record` appends to a buffer and updates the in-memory totals the
router's budget and quota checks read; a background task writes the buffer in
one ``COPY`` every ``flush_interval_s`` and re-reads the totals every
``reload_interval_s``, so several processes sharing one database converge within
that interval.

Cost in USD = tokens_in / 1e6 x input price + tokens_out / 1e6 x output price,
prices per million tokens from ``llm.prices`` (see ``llm.prices_source``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from chiffon.shared.config import LLMPrice
from chiffon.shared.errors import InvalidInput
from chiffon.shared.store import Store

log = logging.getLogger(__name__)

GroupBy = Literal["tier", "backend", "model", "caller", "day", "status"]
GROUP_COLUMNS: dict[str, str] = {
    "tier": "tier", "backend": "backend", "model": "model", "caller": "caller", "status": "status",
    "day": "to_char(date_trunc('day', at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
}


def cost_usd(price: LLMPrice | None, tokens_in: int, tokens_out: int) -> float:
    """USD for the tokens at ``price`` (per million tokens); 0 for an unpriced (local) model."""
    if price is None:
        return 0.0
    return (tokens_in * price.input_usd_per_mtok + tokens_out * price.output_usd_per_mtok) / 1_000_000


@dataclass
class Entry:
    """One ledger row."""

    request_id: str
    caller: str
    tier: str
    backend: str
    model: str
    external: bool
    status: str
    tokens_in: int
    tokens_out: int
    latency_ms: float | None
    ttft_ms: float | None
    tokens_per_s: float | None
    cost_usd: float
    note: str | None


_COLUMNS = [f.name for f in fields(Entry)]


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class Ledger:
    """Buffered writer plus the running totals: external spend this month, local tokens today per tier."""

    def __init__(self, store: Store, flush_interval_s: float = 0.5, reload_interval_s: float = 5.0) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.reload_interval_s = reload_interval_s
        self._reloaded_at = 0.0
        self._pending: list[Entry] = []
        self.external_spent_usd = 0.0
        self.tokens_today: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the totals and start the background writer."""
        await self._reload()
        self._task = asyncio.create_task(self._loop(), name="llm-ledger")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                stale = time.monotonic() - self._reloaded_at >= self.reload_interval_s
                if self._pending or stale:
                    await self.flush(reload=stale)
            except Exception:  # keep the buffer; the next round retries
                log.exception("llm ledger flush failed; %d entries kept", len(self._pending))

    def record(self, entry: Entry) -> None:
        """Queue ``entry`` and count it in the totals at once."""
        self._pending.append(entry)
        if entry.external:
            self.external_spent_usd += entry.cost_usd
        else:
            self.tokens_today[entry.tier] = self.tokens_today.get(entry.tier, 0) + entry.tokens_in + entry.tokens_out

    async def flush(self, reload: bool = True) -> None:
        """Write what is buffered; with ``reload``, refresh the totals from the database."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self.store.pool.copy_records_to_table(
                        "llm_requests", columns=_COLUMNS,
                        records=[tuple(Decimal(str(round(v, 6))) if k == "cost_usd" else v
                                       for k, v in zip(_COLUMNS, (getattr(e, c) for c in _COLUMNS), strict=True))
                                 for e in batch])
                except Exception:
                    self._pending[:0] = batch
                    raise
            if reload:
                await self._reload()

    async def _reload(self) -> None:
        self._reloaded_at = time.monotonic()
        now = datetime.now(UTC)
        row = await self.store.pool.fetchrow(
            "SELECT coalesce(sum(cost_usd), 0) AS spent FROM llm_requests WHERE external AND at >= $1",
            _month_start(now))
        rows = await self.store.pool.fetch(
            "SELECT tier, sum(tokens_in + tokens_out) AS tokens FROM llm_requests "
            "WHERE NOT external AND at >= $1 GROUP BY tier", _day_start(now))
        pending_ext = sum(e.cost_usd for e in self._pending if e.external)
        self.external_spent_usd = float(row["spent"]) + pending_ext
        today = {r["tier"]: int(r["tokens"]) for r in rows}
        for e in self._pending:
            if not e.external:
                today[e.tier] = today.get(e.tier, 0) + e.tokens_in + e.tokens_out
        self.tokens_today = today

    async def usage(self, since: datetime | None, group_by: str) -> list[dict[str, Any]]:
        """Totals per group since ``since`` (default: 30 days), largest cost first.

        Each row: ``{<group_by>, requests, errors, tokens_in, tokens_out, cost_usd, p50_latency_ms,
        p95_latency_ms, mean_ttft_ms, mean_tokens_per_s}``.

        Raises:
            InvalidInput: unknown ``group_by``.
        """
        if group_by not in GROUP_COLUMNS:
            raise InvalidInput("group_by", f"{group_by!r} is not one of {', '.join(GROUP_COLUMNS)}")
        await self.flush()
        since = since or datetime.now(UTC) - timedelta(days=30)
        key = GROUP_COLUMNS[group_by]
        rows = await self.store.pool.fetch(
            f"""SELECT {key} AS key, count(*) AS requests, count(*) FILTER (WHERE status = 'error') AS errors,
                       sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,
                       avg(ttft_ms) AS ttft, avg(tokens_per_s) AS tps
                FROM llm_requests WHERE at >= $1 GROUP BY 1 ORDER BY sum(cost_usd) DESC, count(*) DESC""",
            since)

        def num(v: Any, digits: int = 1) -> float | None:
            return None if v is None else round(float(v), digits)

        return [{group_by: r["key"], "requests": r["requests"], "errors": r["errors"],
                 "tokens_in": int(r["tokens_in"] or 0), "tokens_out": int(r["tokens_out"] or 0),
                 "cost_usd": num(r["cost_usd"], 6), "p50_latency_ms": num(r["p50"]), "p95_latency_ms": num(r["p95"]),
                 "mean_ttft_ms": num(r["ttft"]), "mean_tokens_per_s": num(r["tps"])} for r in rows]

    async def close(self) -> None:
        """Stop the writer and flush what is left."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("llm ledger: %d entries lost at close", len(self._pending))
