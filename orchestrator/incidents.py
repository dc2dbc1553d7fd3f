"""Incidents: the error bus's events (``chiffon:errors``) correlated into what a human handles.

One :class:`Correlator` per deployment reads the stream in the consumer group ``incidents`` (several processes
may run one; each event is handled once) and, per event:

* its **keys** are ``plan:ID``, ``task:ID``, ``host:NAME``, ``backend:NAME`` and ``correlation:ID`` from its
  context, or ``source:SOURCE:TYPE`` when it has none;
* a ``recovered`` event resolves the open incidents that share a key with it;
* any other event joins the open incident that shares a key and was updated within
  ``errors.incident_window_s`` (its keys, sources, event count and highest severity grow), or opens one;
* **escalation**: an incident that is critical, or open longer than ``errors.escalate_after_s``, goes once to the
  human inbox and to every Apprise URL in ``errors.notify_urls`` (``notify.urls`` while that is empty).

Every ``errors.flood_window_s`` it also resolves incidents quiet for ``errors.resolve_after_s`` and escalates the
ones that have been open too long. Incidents live in PostgreSQL (``incidents``, migration 013).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from chiffon.shared.bus import Message
from chiffon.shared.error_bus import ERRORS_STREAM, SEVERITIES
from chiffon.shared.errors import InvalidInput, NotFound
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

GROUP = "incidents"
_KEY_NAMES = {"plan": "plan", "task": "task", "host": "host", "backend": "backend", "correlation_id": "correlation"}
_COLUMNS = ("id, keys, status, severity, title, sources, events, opened_at, updated_at, resolved_at, escalated_at, "
            "last_event")


def keys_of(event: dict[str, Any]) -> list[str]:
    """The correlation keys of an error event (see the module docstring)."""
    context = event.get("context") or {}
    keys = [f"{_KEY_NAMES[k]}:{v}" for k, v in context.items() if k in _KEY_NAMES and v]
    return sorted(keys) or [f"source:{event['source']}:{event['error_type']}"]


def _worst(a: str, b: str) -> str:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b  # type: ignore[arg-type]


class Correlator:
    """Consumer group ``incidents`` on ``chiffon:errors``: opens, updates, resolves and escalates incidents."""

    def __init__(self, rt: Runtime, *, name: str = "correlator") -> None:
        self.rt = rt
        self.name = name
        self.settings = rt.settings.errors

    async def run_forever(self) -> None:
        """Handle events as they come, sweep every ``errors.flood_window_s``; until cancelled."""
        await self.rt.bus.ensure_group(ERRORS_STREAM, GROUP)
        loop = asyncio.get_running_loop()
        swept = loop.time()
        while True:
            try:
                messages = await self.rt.bus.read_group(ERRORS_STREAM, GROUP, self.name, count=200, block_ms=500)
                for msg in messages:
                    await self.handle(msg)
                if loop.time() - swept >= self.settings.flood_window_s:
                    swept = loop.time()
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store or the bus restarting: say so, try again
                log.warning("incident correlation paused: %s", exc)
                await asyncio.sleep(1.0)

    async def catch_up(self) -> int:
        """Handle every event waiting for the group now, without blocking (``chiffon errors`` does this first, so
        its incidents are current even where no correlator runs); the number handled."""
        await self.rt.bus.ensure_group(ERRORS_STREAM, GROUP)
        handled = 0
        while messages := await self.rt.bus.read_group(ERRORS_STREAM, GROUP, self.name, count=500, block_ms=None):
            for msg in messages:
                await self.handle(msg)
            handled += len(messages)
        await self.sweep()
        return handled

    async def handle(self, msg: Message) -> None:
        """Apply one event, then ack it (an event whose write failed is redelivered)."""
        event = msg.data
        keys = keys_of(event)
        if event.get("error_type") == "recovered":
            await self.rt.store.pool.execute(
                "UPDATE incidents SET status='resolved', resolved_at=now(), updated_at=now() "
                "WHERE status='open' AND keys && $1::text[]", keys)
        else:
            incident = await self._join_or_open(event, keys)
            if incident["severity"] == "critical" and incident["escalated_at"] is None:
                await self.escalate(incident)
        await self.rt.bus.ack(ERRORS_STREAM, GROUP, msg.id)

    async def _join_or_open(self, event: dict[str, Any], keys: list[str]) -> dict[str, Any]:
        count = int(event.get("count", 1))
        severity = str(event.get("severity", "error"))
        async with self.rt.store.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM incidents WHERE status='open' AND keys && $1::text[] "
                "AND updated_at > now() - make_interval(secs => $2) ORDER BY updated_at DESC LIMIT 1 FOR UPDATE",
                keys, self.settings.incident_window_s)
            if row is not None:
                row = await conn.fetchrow(
                    f"UPDATE incidents SET keys = ARRAY(SELECT DISTINCT unnest(keys || $2::text[])), "
                    f"sources = ARRAY(SELECT DISTINCT unnest(sources || ARRAY[$3::text])), events = events + $4, "
                    f"severity = $5, updated_at = now(), last_event = $6 WHERE id = $1 RETURNING {_COLUMNS}",
                    row["id"], keys, event["source"], count, _worst(row["severity"], severity), json.dumps(event))
            else:
                row = await conn.fetchrow(
                    f"INSERT INTO incidents (id, keys, status, severity, title, sources, events, last_event) "
                    f"VALUES ($1, $2, 'open', $3, $4, ARRAY[$5::text], $6, $7) RETURNING {_COLUMNS}",
                    f"inc-{secrets.token_hex(5)}", keys, severity,
                    f"{event['source']} {event['error_type']}: {event['message'][:200]}", event["source"], count,
                    json.dumps(event))
        return _incident(row)

    async def sweep(self) -> None:
        """Resolve quiet incidents, escalate long-open ones, refresh the open-incidents gauge."""
        from chiffon.shared import metrics

        pool = self.rt.store.pool
        await pool.execute("UPDATE incidents SET status='resolved', resolved_at=now() WHERE status='open' "
                           "AND updated_at < now() - make_interval(secs => $1)", self.settings.resolve_after_s)
        rows = await pool.fetch(f"SELECT {_COLUMNS} FROM incidents WHERE status='open' AND escalated_at IS NULL "
                                "AND opened_at < now() - make_interval(secs => $1)", self.settings.escalate_after_s)
        for row in rows:
            await self.escalate(_incident(row))
        counts = {r["severity"]: r["n"] for r in await pool.fetch(
            "SELECT severity, count(*) AS n FROM incidents WHERE status='open' GROUP BY severity")}
        for severity in SEVERITIES:
            metrics.INCIDENTS_OPEN.labels(severity).set(counts.get(severity, 0))

    async def escalate(self, incident: dict[str, Any]) -> None:
        """Put ``incident`` in the human inbox and send it to the Apprise URLs; once (``escalated_at``)."""
        from chiffon.servers.tasks import inbox

        marked = await self.rt.store.pool.fetchval(
            "UPDATE incidents SET escalated_at=now() WHERE id=$1 AND escalated_at IS NULL RETURNING id", incident["id"])
        if marked is None:
            return
        title = f"[{incident['severity']}] {incident['title']}"
        body = {"incident": incident["id"], "keys": incident["keys"], "events": incident["events"],
                "sources": incident["sources"], "opened_at": incident["opened_at"]}
        await inbox.notify(self.rt, None, "incident", title, body)
        urls = incident_urls(self.rt)
        if urls:
            sent = await asyncio.to_thread(_apprise, urls, title, json.dumps(body, indent=1, default=str))
            if not sent:
                log.warning("incident %s: a notification could not be delivered (errors.notify_urls)", incident["id"])


@contextlib.asynccontextmanager
async def running_correlator(rt: Runtime) -> AsyncIterator[Correlator]:
    """A :class:`Correlator` in the background for the life of the block."""
    correlator = Correlator(rt, name=f"{socket.gethostname()}-{os.getpid()}")
    task = asyncio.create_task(correlator.run_forever())
    try:
        yield correlator
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def notify_humans(rt: Runtime, kind: str, title: str, body: dict[str, Any]) -> None:
    """What an escalation does, for news a human should hear at once (new drift): ``title`` and ``body`` into the
    human inbox (``notifications``, kind ``kind``) and to every Apprise URL in ``errors.notify_urls`` (a delivery
    that fails is logged, not raised)."""
    from chiffon.servers.tasks import inbox

    await inbox.notify(rt, None, kind, title, body)
    urls = incident_urls(rt)
    if urls and not await asyncio.to_thread(_apprise, urls, title, json.dumps(body, indent=1, default=str)):
        log.warning("%s: a notification could not be delivered (errors.notify_urls)", kind)


def incident_urls(rt: Runtime) -> list[str]:
    """Where escalations and :func:`notify_humans` go: ``errors.notify_urls``, or, while that is empty,
    ``notify.urls`` (the one place most homelabs set)."""
    return [u.get_secret_value() for u in rt.settings.errors.notify_urls or rt.settings.notify.urls]


def _apprise(urls: list[str], title: str, body: str) -> bool:
    import apprise

    notifier = apprise.Apprise()
    for url in urls:
        notifier.add(url)
    return bool(notifier.notify(title=title, body=body))


def _incident(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["last_event"] = json.loads(out["last_event"]) if isinstance(out["last_event"], str) else out["last_event"]
    for key in ("opened_at", "updated_at", "resolved_at", "escalated_at"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    out["keys"], out["sources"] = list(out["keys"]), list(out["sources"])
    return out


async def incidents(rt: Runtime, *, since: datetime | None = None, severity: str | None = None,
                    status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Incidents newest first, at least ``severity`` when given. Raises InvalidInput for a bad filter."""
    if severity is not None and severity not in SEVERITIES:
        raise InvalidInput("severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    if status is not None and status not in ("open", "resolved"):
        raise InvalidInput("status", "open or resolved")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be within 1..1000")
    wanted = list(SEVERITIES[SEVERITIES.index(severity):]) if severity else list(SEVERITIES)  # type: ignore[arg-type]
    rows = await rt.store.pool.fetch(
        f"SELECT {_COLUMNS} FROM incidents WHERE ($1::timestamptz IS NULL OR updated_at >= $1) "
        "AND severity = ANY($2::text[]) AND ($3::text IS NULL OR status = $3) ORDER BY updated_at DESC LIMIT $4",
        since, wanted, status, limit)
    return [_incident(r) for r in rows]


async def incident(rt: Runtime, incident_id: str) -> dict[str, Any]:
    """One incident with its recent events (from the stream: those sharing a key). Raises NotFound."""
    row = await rt.store.pool.fetchrow(f"SELECT {_COLUMNS} FROM incidents WHERE id=$1", incident_id)
    if row is None:
        raise NotFound(f"no incident {incident_id!r}; `chiffon errors` lists them")
    found = _incident(row)
    keys = set(found["keys"])
    found["recent_events"] = [m.data for m in await rt.bus.recent(ERRORS_STREAM, count=2000)
                              if keys & set(keys_of(m.data))][:100]
    return found


async def recent_errors(rt: Runtime, *, since: datetime | None = None, severity: str | None = None,
                        limit: int = 100) -> list[dict[str, Any]]:
    """Error events newest first from the stream, at least ``severity``, no older than ``since``."""
    if severity is not None and severity not in SEVERITIES:
        raise InvalidInput("severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    floor = SEVERITIES.index(severity) if severity else 0  # type: ignore[arg-type]
    out = []
    for msg in await rt.bus.recent(ERRORS_STREAM, count=max(limit * 5, 500)):
        event = msg.data
        if SEVERITIES.index(event.get("severity", "error")) < floor:
            continue
        if since is not None and datetime.fromisoformat(event["at"]) < since:
            break
        out.append(event)
        if len(out) >= limit:
            break
    return out
