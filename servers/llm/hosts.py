"""Which homelab hosts can take inference work now, from the host daemons' heartbeats.

Each host daemon writes ``chiffon:host:<name>`` (JSON ``{"status": "available" |
"busy" | "offline", ...}``) with a TTL; an expired key means the daemon stopped.
Until daemons run, ``llm.assume_hosts_available`` says a host without a key is
available. Reads are cached for ``ttl_s`` so routing costs no Redis round trip.
"""

from __future__ import annotations

import json
import logging
import time

from shared.bus import Bus

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "chiffon:host:{host}"


class HostStatus:
    """Cached view of the heartbeat keys."""

    def __init__(self, bus: Bus | None, assume_available: bool, ttl_s: float = 2.0) -> None:
        self.bus = bus
        self.assume_available = assume_available
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str]] = {}

    def cached(self, host: str | None) -> str:
        """Last known status of ``host``: available, busy, offline (None host: available)."""
        if host is None:
            return "available"
        hit = self._cache.get(host)
        return hit[1] if hit else ("available" if self.assume_available else "offline")

    async def refresh(self, hosts: set[str]) -> None:
        """Re-read the heartbeat keys of ``hosts`` whose cache entry is older than ``ttl_s``."""
        now = time.monotonic()
        stale = sorted(h for h in hosts if now - self._cache.get(h, (-1e9, ""))[0] >= self.ttl_s)
        if not stale or self.bus is None:
            return
        try:
            values = await self.bus.redis.mget([HEARTBEAT_KEY.format(host=h) for h in stale])
        except Exception as exc:  # Redis down must not stop routing: keep the last known state
            log.warning("host heartbeats unreadable (%s); keeping last known state", exc)
            return
        for host, raw in zip(stale, values):
            if raw is None:
                status = "available" if self.assume_available else "offline"
            else:
                try:
                    status = str(json.loads(raw).get("status", "available"))
                except (ValueError, AttributeError):
                    status = "available"
            self._cache[host] = (now, status)
