"""Which homelab hosts can take work now, from the host daemons' heartbeats.

Keys in Redis:

* ``chiffon:host:<name>``: the last heartbeat of ``chiffon-hostd`` on that host, a JSON
  :class:`~servers.hostd.resources.HostSnapshot` (``status`` available or busy), written every
  ``hostd.heartbeat_s`` with a TTL of ``hostd.heartbeat_ttl_s``;
* ``chiffon:hosts:seen``: the set of hosts that ever sent a heartbeat;
* ``chiffon:host-override:<name>``: the operator's word (``chiffon host busy|free``), no TTL.

A host is ``busy`` when the operator says so or its heartbeat does; ``offline`` when it sent
heartbeats once and its key has expired; a host that never reported is ``unknown`` while
``hostd.assume_available`` is on (before any daemon runs: work for it goes ahead, :data:`USABLE`), else
offline. Nothing said it is available, so nothing shows it as available.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from chiffon.shared.bus import Bus

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "chiffon:host:{host}"
OVERRIDE_KEY = "chiffon:host-override:{host}"
SEEN_KEY = "chiffon:hosts:seen"
HostState = Literal["available", "busy", "offline", "unknown"]
USABLE = frozenset({"available", "unknown"})  # the states work for a host goes ahead in
LAPSED = "no heartbeat within its TTL"  # the reason of a host that sent heartbeats and stopped


async def host_states(bus: Bus, hosts: list[str], assume_available: bool) -> dict[str, dict[str, Any]]:
    """``{host: {"status", "reason", "heartbeat"}}`` for ``hosts`` from one round trip.

    ``heartbeat`` is the host's last snapshot (None when its key is gone).
    """
    keys = [HEARTBEAT_KEY.format(host=h) for h in hosts] + [OVERRIDE_KEY.format(host=h) for h in hosts]
    values, seen = await bus.lookup(keys, SEEN_KEY) if hosts else ([], set())
    beats, overrides = values[:len(hosts)], values[len(hosts):]
    out: dict[str, dict[str, Any]] = {}
    for host, raw, override in zip(hosts, beats, overrides, strict=True):
        beat = _json(raw)
        said = _json(override)
        if said:
            status, reason = "busy", _operator_reason(said)
        elif beat is not None:
            status, reason = str(beat.get("status", "available")), str(beat.get("reason", ""))
        elif host in seen or not assume_available:
            status, reason = "offline", LAPSED if host in seen else "never sent a heartbeat"
        else:
            status, reason = "unknown", "never sent a heartbeat; work for it goes ahead (hostd.assume_available)"
        out[host] = {"status": status, "reason": reason, "heartbeat": beat}
    return out


async def set_operator_busy(bus: Bus, host: str, busy: bool, reason: str = "", by: str = "") -> None:
    """``chiffon host busy|free``: set or clear the operator's busy flag; readers see it at once (it wins over
    the heartbeat), and hostd reports it in its next heartbeat."""
    key = OVERRIDE_KEY.format(host=host)
    if busy:
        await bus.put(key, json.dumps({"reason": reason, "by": by, "at": datetime.now(UTC).isoformat()}))
    else:
        await bus.delete(key)


async def operator_flag(bus: Bus, host: str) -> str | None:
    """The operator's busy reason for ``host`` (``chiffon host busy``), or None when it is not flagged."""
    said = _json(await bus.get(OVERRIDE_KEY.format(host=host)))
    return None if said is None else _operator_reason(said)


async def publish_heartbeat(bus: Bus, host: str, snapshot_json: str, ttl_ms: int) -> None:
    """hostd's beat: ``host``'s snapshot, readable for ``ttl_ms``; the host is remembered as seen, so that a
    missing beat later reads as offline."""
    await bus.put(HEARTBEAT_KEY.format(host=host), snapshot_json, ttl_ms=ttl_ms)
    await bus.remember(SEEN_KEY, host)


async def withdraw_heartbeat(bus: Bus, host: str) -> None:
    """A clean stop of hostd: ``host`` reads as offline at once, not after the TTL."""
    await bus.delete(HEARTBEAT_KEY.format(host=host))


def _operator_reason(said: dict[str, Any]) -> str:
    return f"operator: {said.get('reason') or 'marked busy'} ({said.get('by') or '?'})"


def _json(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class HostStatus:
    """Cached view of :func:`host_states` for the router: routing costs no Redis round trip per request."""

    def __init__(self, bus: Bus | None, assume_available: bool, ttl_s: float = 2.0) -> None:
        self.bus = bus
        self.assume_available = assume_available
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str]] = {}

    def cached(self, host: str | None) -> str:
        """Last known status of ``host``: available, busy, offline or unknown (never reported; :data:`USABLE`
        while ``assume_available``); a None host: available."""
        if host is None:
            return "available"
        hit = self._cache.get(host)
        return hit[1] if hit else ("unknown" if self.assume_available else "offline")

    async def refresh(self, hosts: set[str]) -> None:
        """Re-read the state of ``hosts`` whose cache entry is older than ``ttl_s``."""
        now = time.monotonic()
        stale = sorted(h for h in hosts if now - self._cache.get(h, (-1e9, ""))[0] >= self.ttl_s)
        if not stale or self.bus is None:
            return
        try:
            states = await host_states(self.bus, stale, self.assume_available)
        except Exception as exc:  # Redis down must not stop routing: keep the last known state
            log.warning("host heartbeats unreadable (%s); keeping last known state", exc)
            return
        for host, state in states.items():
            self._cache[host] = (now, state["status"])


@dataclass(frozen=True)
class HeartbeatChanges:
    """What one :meth:`HeartbeatWatch.check` saw: the hosts whose heartbeats are lost now, and since the last
    check those that stopped and those that came back (sorted)."""

    lost: frozenset[str]
    stopped: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()


class HeartbeatWatch:
    """Notice when a host's heartbeats stop and when they come back; the caller reports the changes (the
    error bus: :func:`chiffon.shared.error_bus.report_heartbeats`). Only hosts that sent a beat before count:
    one never started is ``offline`` without being lost. Call :meth:`check` each heartbeat interval; the hosts
    lost so far are remembered between calls (several watchers report the same loss, which flood detection and
    the incident's host key fold into one). A watcher returns the changes it sees, not the state it finds: the
    first call only takes the baseline, so each short-lived `chiffon run` (which runs one) does not report again
    a host that was already down."""

    def __init__(self) -> None:
        self.lost: set[str] | None = None  # None until the first check took the baseline

    async def check(self, bus: Bus, hosts: list[str]) -> HeartbeatChanges:
        """The changes since the last call (none on the first: it takes the baseline)."""
        states = await host_states(bus, hosts, assume_available=True)
        lost = {h for h, state in states.items() if state["status"] == "offline" and state["reason"] == LAPSED}
        before, self.lost = self.lost, lost
        if before is None:
            return HeartbeatChanges(frozenset(lost))
        return HeartbeatChanges(frozenset(lost), tuple(sorted(lost - before)), tuple(sorted(before - lost)))
