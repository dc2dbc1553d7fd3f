"""The heartbeat: every ``hostd.heartbeat_s`` seconds, this host's snapshot to Redis with a TTL."""

from __future__ import annotations

import asyncio
import logging

import psutil

from chiffon.servers.hostd.resources import BusyDetector, Fit, GpuReader, HostSnapshot, capacity, machine
from chiffon.shared import metrics
from chiffon.shared.bus import Bus
from chiffon.shared.config import HostConfig, Settings
from chiffon.shared.error_bus import report_error, report_recovery
from chiffon.shared.errors import ConfigError, InvalidInput
from chiffon.shared.hosts import operator_flag, publish_heartbeat

log = logging.getLogger(__name__)


class Heartbeat:
    """Reads the host, decides busy or available, and keeps ``chiffon:host:<name>`` alive.

    ``latest`` is the last snapshot (what ``GET /capacity`` answers from).
    """

    def __init__(self, settings: Settings, reader: GpuReader, bus: Bus | None) -> None:
        self.settings = settings
        self.reader = reader
        self.bus = bus
        self.detector = BusyDetector(settings.hostd)
        self.latest: HostSnapshot | None = None
        self.failure: str | None = None  # why the last beat failed; None once one succeeds again

    async def beat(self) -> HostSnapshot:
        """Take one snapshot and, with a bus, write it with its TTL."""
        gpus = await asyncio.to_thread(self.reader.read)
        busy, reason = self.detector.update(gpus)
        if self.bus is not None and (said := await operator_flag(self.bus, self.settings.host)):
            busy, reason = True, said
        figures = await asyncio.to_thread(machine, self.settings.home)
        snapshot = HostSnapshot(host=self.settings.host, status="busy" if busy else "available", reason=reason,
                                gpu_reader=self.reader.kind, gpus=gpus, **figures)  # type: ignore[arg-type]
        if self.bus is not None:
            ttl_ms = int(self.settings.hostd.heartbeat_ttl_s * 1000)
            await publish_heartbeat(self.bus, self.settings.host, snapshot.model_dump_json(), ttl_ms)
        observe_snapshot(snapshot, await asyncio.to_thread(self._resident))
        if self.latest is None or self.latest.status != snapshot.status:
            log.info("host %s is %s%s", snapshot.host, snapshot.status, f": {reason}" if reason else "")
        self.latest = snapshot
        return snapshot

    async def run_forever(self) -> None:
        """Beat until cancelled; a failed beat is logged and retried at the next period."""
        while True:
            try:
                await self.beat()
            except Exception as exc:  # Redis restarting, a driver hiccup: keep beating
                log.warning("heartbeat failed: %s", exc)
                if self.failure is None:  # said once per outage; the error bus queues it while Redis is down
                    report_error("hostd", "heartbeat_failed", f"{self.settings.host}: heartbeat not published: "
                                 f"{type(exc).__name__}: {exc}", "error", {"host": self.settings.host})
                self.failure = f"{type(exc).__name__}: {exc}"
            else:
                if self.failure is not None:
                    report_recovery("hostd", f"{self.settings.host}: heartbeats published again",
                                    {"host": self.settings.host})
                self.failure = None
            await asyncio.sleep(self.settings.hostd.heartbeat_s)

    def _resident(self) -> dict[str, int]:
        """Resident bytes per watched process name (hostd.own_processes), summed over its processes."""
        rss: dict[str, int] = {}
        for proc in psutil.process_iter(["name", "memory_info"]):
            name, info = proc.info["name"], proc.info["memory_info"]
            if name in self.settings.hostd.own_processes and info is not None:
                rss[name] = rss.get(name, 0) + info.rss
        return rss

    async def fit(self, model: str | None, need_mb: int | None = None) -> Fit:
        """Whether ``model`` (its VRAM need from ``hostd.model_vram_mb``, or ``need_mb``) fits here now.

        Raises:
            InvalidInput: neither a known model nor a positive need was given (the known models are listed).
        """
        known = self.settings.hostd.model_vram_mb
        if need_mb is None:
            if model not in known:
                names = ", ".join(sorted(known)) or "none configured (hostd.model_vram_mb)"
                raise InvalidInput("model", f"{model!r} has no VRAM need in hostd.model_vram_mb; known: {names}")
            need_mb = known[model]
        if need_mb <= 0:
            raise InvalidInput("need_mb", f"must be a positive number of MB, got {need_mb}")
        snapshot = self.latest or await self.beat()
        host = self.settings.hosts.get(self.settings.host, HostConfig())
        return capacity(snapshot, host, model or f"{need_mb} MB", need_mb)

    async def admit(self, key: str) -> None:
        """Refuse to load engine ``key`` (``stt:<model>``, ``tts:<engine>``) when its VRAM need, if configured,
        does not fit within this host's budget now.

        Raises:
            ConfigError: it does not fit; the arithmetic is in the message.
        """
        if key not in self.settings.hostd.model_vram_mb:
            return
        await self.beat()  # decide on a fresh reading
        fit = await self.fit(key)
        if not fit.fits:
            raise ConfigError(f"not loading {key}: {fit.reason}")


def observe_snapshot(snapshot: HostSnapshot, rss: dict[str, int]) -> None:
    """Set the host and GPU gauges of :mod:`chiffon.shared.metrics` from one heartbeat; ``rss`` is resident bytes
    per watched process name."""
    host = snapshot.host
    metrics.HOST_ONLINE.labels(host).set(1)
    metrics.HOST_BUSY.labels(host).set(1 if snapshot.status == "busy" else 0)
    metrics.CPU_PERCENT.labels(host).set(snapshot.cpu_percent)
    metrics.LOAD_1M.labels(host).set(snapshot.load_1m)
    metrics.CPU_CORES.labels(host).set(snapshot.cpu_cores)
    metrics.RAM_AVAILABLE.labels(host).set(snapshot.ram_available_mb * metrics.MB)
    metrics.DISK_USED.labels(host).set(snapshot.disk_used_percent)
    for g in snapshot.gpus:
        labels = (host, str(g.index), g.name)
        metrics.GPU_VRAM_USED.labels(*labels).set(g.vram_used_mb * metrics.MB)
        metrics.GPU_VRAM_TOTAL.labels(*labels).set(g.vram_total_mb * metrics.MB)
        metrics.GPU_VRAM_CHIFFON.labels(*labels).set(g.chiffon_vram_mb * metrics.MB)
        if g.busy_percent is not None:
            metrics.GPU_BUSY.labels(*labels).set(g.busy_percent)
    for name, value in rss.items():
        metrics.PROCESS_RSS.labels(host, name).set(value)
